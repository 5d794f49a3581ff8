"""Operations around the jobs: locks, run history, status, monitoring hooks.

Imports go one way: cli -> commands -> ops.runner -> ops.{locks, history, monitor, signals}
-> db/* ; ops.monitor -> ops.{healthchecks, sentry} ; ops.status and
ops.metrics read the history. Nothing here imports cli or commands, and jobs/ does not
import ops: a job neither knows nor cares whether it is locked or monitored.
"""
