from markupsafe import Markup
def bio(user):
    return Markup(f"<p>{user.bio}</p>")
