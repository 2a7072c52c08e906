import tarfile, requests, io

def fetch(url, dest):
    r = requests.get(url)
    tarfile.open(fileobj=io.BytesIO(r.content)).extractall(dest)
