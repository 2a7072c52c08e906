from pathlib import Path
ROOT = Path("/srv/static").resolve()

def read_file(name: str):
    p = (ROOT / name).resolve()
    if ROOT not in p.parents:
        raise PermissionError(name)
    return p.read_bytes()
