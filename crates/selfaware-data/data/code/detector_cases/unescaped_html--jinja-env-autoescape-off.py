import jinja2
env = jinja2.Environment(loader=jinja2.FileSystemLoader("templates"), autoescape=False)
def page(user):
    return env.get_template("page.html").render(user=user)
