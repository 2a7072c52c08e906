def add_user(cur, name, email):
    cur.execute(
        f"""
        INSERT INTO users (name, email)
        VALUES ('{name}', '{email}')
        """
    )
