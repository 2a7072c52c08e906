from markupsafe import Markup
def bio(user):
    return Markup("<p>{}</p>").format(user.bio)
