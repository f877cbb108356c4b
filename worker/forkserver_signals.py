"""Imported by the fork server alone (the first module of ``worker.child``'s forkserver preload):
it ignores SIGTERM, so a SIGTERM to the worker's process group (``kill -TERM -pgid``,
systemd's default stop) does not end the process the worker's job processes are forked from
while they run. The fork server still ends with its worker: it watches a pipe to it.

(Blocking SIGTERM while the fork server is started does not carry over: Python's fork-exec
unblocks every signal in the new process, as ``/proc/<pid>/status`` of the fork server shows.)
"""

import signal

signal.signal(signal.SIGTERM, signal.SIG_IGN)
