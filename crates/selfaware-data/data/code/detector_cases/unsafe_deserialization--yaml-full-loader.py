import yaml
from flask import request

@app.route("/import", methods=["POST"])
def import_config():
    data = yaml.load(request.data, Loader=yaml.FullLoader)
    return str(data)
