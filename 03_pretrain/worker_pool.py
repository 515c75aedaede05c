"""Plumbing for speed, not part of any lesson: jobs shared out among worker processes, so that a 2-core
CPU does twice the work when one process's second thread would not pay (small models; used by chapter
06's table of quantized models and chapter 07's evaluation of several models).

    with worker_pool(context, workers=2, threads=1) as submit:
        future = submit(job, stage, spec)     # runs job(context, stage, spec), here or in a worker
        row = future.result()

Each worker is spawned once and given `context` (a model, its inputs, where to write) once. A job that
draws nothing at random gives the figures the main process would get, to the last digit (the callers'
tests compare them). With workers <= 1 (a GPU, --workers 1, one CPU) a job runs in this process when its
result is asked for. Ctrl-C or an error drops the queued jobs and waits only for the running ones.
"""
import concurrent.futures
import contextlib
import multiprocessing
import os

import torch

WORKER = {}  # in a worker process: the context it was given


class Later:
    """A job run in this process when its result is asked for (submit without workers)."""

    def __init__(self, fn, args):
        self.fn, self.args = fn, args

    def result(self):
        return self.fn(*self.args)


@contextlib.contextmanager
def worker_pool(context, workers, threads):
    """submit(fn, *args) -> a future of fn(context, *args): run in `workers` spawned processes of `threads`
    torch thread(s) each (at most the CPU count), or in this process if that leaves 1 or fewer."""
    workers = min(workers, os.cpu_count() or 1)
    if workers <= 1:
        yield lambda fn, *args: Later(fn, (context, *args))
        return
    spawn = multiprocessing.get_context("spawn")  # not fork: a forked child inherits torch's thread pool half set up
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=spawn, initializer=start_worker,
                                                initargs=(context, threads)) as pool:
        try:
            yield lambda fn, *args: pool.submit(in_worker, fn, *args)
        except BaseException:  # Ctrl-C or an error: drop the queued jobs, wait only for the running ones
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def start_worker(context, threads):
    if threads:
        torch.set_num_threads(threads)
    WORKER.update(context)


def in_worker(fn, *args):
    return fn(WORKER, *args)


def cpu_seconds():
    """CPU seconds of this process and of its finished worker processes (the load-free figure beside the wall time)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system
