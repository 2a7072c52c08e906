import os, subprocess
os.system("clear")
subprocess.run("make build", shell=True, check=True)
