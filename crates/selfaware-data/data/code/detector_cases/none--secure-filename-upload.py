import os
from flask import Flask, request
from werkzeug.utils import secure_filename
app = Flask(__name__)

@app.route("/upload", methods=["POST"])
def upload():
    f = request.files["file"]
    path = os.path.join(app.config["UPLOAD_FOLDER"], secure_filename(f.filename))
    f.save(path)
    return "ok"
