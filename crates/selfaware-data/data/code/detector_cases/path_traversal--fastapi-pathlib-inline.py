from pathlib import Path
from fastapi import FastAPI
app = FastAPI()
ROOT = Path("/srv/static")

@app.get("/files/{name}")
def read_file(name: str):
    return (ROOT / name).read_bytes()
