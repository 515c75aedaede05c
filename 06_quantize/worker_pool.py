"""Plumbing for speed, not part of the lesson: quantize.py's rows (and two side studies) shared out among
worker processes, so that a 2-core CPU does twice the work.

    with worker_pool(context, workers=2, threads=1) as pool:
        future = pool.submit(job, stage, spec)     # runs job(context, stage, spec), here or in a worker
        row = future.result()

Each worker is spawned once and given `context` (the model, the inputs, where to write) once. Every row is
built and measured from the same model and inputs with no random draw, so a worker's figures are the ones
the main process would get, to the last digit (only tokens/s, a timing, differs; a test compares them).
With workers <= 1 (a GPU, or --workers 1) a job runs in this process when its result is asked for.
"""
import concurrent.futures
import contextlib
import multiprocessing
import os

import torch

WORKER = {}  # in a worker process: the context it was given


class Later:
    """A job run in this process when its result is asked for (the pool's submit, without workers)."""

    def __init__(self, fn, args):
        self.fn, self.args = fn, args

    def result(self):
        return self.fn(*self.args)


class RunHere:
    def __init__(self, context):
        self.context = context

    def submit(self, fn, *args):
        return Later(fn, (self.context, *args))


class WorkerPool:
    def __init__(self, pool):
        self.pool = pool

    def submit(self, fn, *args):
        return self.pool.submit(in_worker, fn, *args)


@contextlib.contextmanager
def worker_pool(context, workers, threads):
    """An executor whose submit(fn, *args) runs fn(context, *args): in `workers` spawned processes of `threads`
    torch thread(s) each (at most the CPU count), or in this process if that is 1 or fewer."""
    workers = min(workers, os.cpu_count() or 1)
    if workers <= 1:
        yield RunHere(context)
        return
    spawn = multiprocessing.get_context("spawn")  # not fork: a forked child inherits torch's thread pool half set up
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=spawn, initializer=start_worker,
                                                initargs=(context, threads)) as pool:
        try:
            yield WorkerPool(pool)
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
