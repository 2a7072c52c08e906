import pickle, redis
r = redis.Redis()
def get_session(sid):
    raw = r.get("session:" + sid)
    return pickle.loads(raw) if raw else {}
