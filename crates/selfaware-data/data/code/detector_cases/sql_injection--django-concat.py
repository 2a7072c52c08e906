def search(request):
    term = request.GET.get("q")
    sql = "SELECT id, title FROM posts WHERE title LIKE '%" + term + "%'"
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchall()
