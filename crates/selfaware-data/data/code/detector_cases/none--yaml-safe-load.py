import yaml

def read(path):
    with open(path) as f:
        return yaml.safe_load(f)
