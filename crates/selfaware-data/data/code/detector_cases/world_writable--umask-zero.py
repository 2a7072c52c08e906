import os
os.umask(0)
with open("/var/tmp/shared.log", "a") as f:
    f.write("x")
