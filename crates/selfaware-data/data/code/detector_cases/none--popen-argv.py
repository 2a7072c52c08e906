import subprocess

def convert(infile, outfile, quality):
    cmd = ["ffmpeg", "-i", infile, "-q:a", str(quality), outfile]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE)
    return proc.communicate()[0]
