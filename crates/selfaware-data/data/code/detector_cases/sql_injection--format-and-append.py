def get_orders(conn, customer, status=None):
    query = "SELECT * FROM orders WHERE customer_id = {}".format(customer)
    if status:
        query += " AND status = '{}'".format(status)
    return conn.execute(query).fetchall()
