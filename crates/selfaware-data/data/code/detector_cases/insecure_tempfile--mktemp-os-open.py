import tempfile, os
def dump(data):
    path = tempfile.mktemp(suffix=".json")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    os.write(fd, data)
