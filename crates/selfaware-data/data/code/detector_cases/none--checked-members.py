import os, tarfile

def is_within(directory, target):
    abs_directory = os.path.abspath(directory)
    abs_target = os.path.abspath(target)
    return os.path.commonprefix([abs_directory, abs_target]) == abs_directory

def extract(path, dest):
    with tarfile.open(path) as tar:
        for member in tar.getmembers():
            member_path = os.path.join(dest, member.name)
            if not is_within(dest, member_path):
                raise Exception("bad path")
        tar.extractall(dest, members=tar.getmembers())
