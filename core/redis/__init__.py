"""A run shared through Redis: the only part of poolfetch that imports the redis client.

``poolfetch run --redis URL`` is an ordinary ``Runner`` whose attempts run in other processes:
``executor.RedisWorkers`` streams attempt frames to them and reads their answers back, so
admission, scheduling, every limit, retries, records, state and statistics are the coordinator's
own, exactly as with ``--processes``. ``worker.WorkerLoop`` is ``poolfetch worker``: it only
executes attempts. ``keys`` names a run's keys and publishes it; ``presence`` counts workers.
"""
