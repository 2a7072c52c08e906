import os
def save_key(key_bytes, path):
    with open(path, "wb") as fh:
        fh.write(key_bytes)
    os.chmod(path, 0o666)
