import os
os.umask(0)
with open("/tmp/shared.log", "a") as f:
    f.write("x")
