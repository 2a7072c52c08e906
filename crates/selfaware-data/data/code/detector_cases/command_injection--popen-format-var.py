import subprocess

def convert(infile, outfile, quality):
    cmd = "ffmpeg -i {} -q:a {} {}".format(infile, quality, outfile)
    proc = subprocess.Popen(cmd, shell=True, stdout=subprocess.PIPE)
    return proc.communicate()[0]
