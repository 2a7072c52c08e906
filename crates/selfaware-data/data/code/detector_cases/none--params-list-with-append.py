def get_orders(conn, customer, status=None):
    query = "SELECT * FROM orders WHERE customer_id = %s"
    params = [customer]
    if status:
        query += " AND status = %s"
        params.append(status)
    cur = conn.cursor()
    cur.execute(query, params)
    return cur.fetchall()
