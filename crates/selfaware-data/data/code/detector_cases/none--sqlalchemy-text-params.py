from sqlalchemy import text
def find(session, name):
    return session.execute(text("SELECT * FROM users WHERE name = :name"), {"name": name}).all()
def count(db):
    db.execute("SELECT COUNT(*) FROM users")
