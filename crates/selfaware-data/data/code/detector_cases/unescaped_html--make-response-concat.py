from flask import Flask, request, make_response
app = Flask(__name__)

@app.route("/greet")
def greet():
    name = request.args.get("name", "")
    html = "<html><body><h1>Hello, " + name + "!</h1></body></html>"
    return make_response(html)
