"""Forwarding between two daemons (docs/deploy.md, "Scaling"): the same requests for one sandbox of daemon A,
sent to A and sent to B (which forwards them to A). Run as root from the repository root after `make build`:
    /usr/bin/python3 bench/bench_cluster.py
"""
import os
import socket
import statistics
import subprocess
import tempfile
import time

import requests

STATE = tempfile.mkdtemp(prefix="lms-bench-cluster-")
def port():
    s=socket.socket(); s.bind(("127.0.0.1",0)); p=s.getsockname()[1]; s.close(); return p
pa,pb=port(),port()
peers=f"a=http://127.0.0.1:{pa},b=http://127.0.0.1:{pb}"
procs=[]
for n,p in (("a",pa),("b",pb)):
    os.makedirs(f"{STATE}/st-{n}", exist_ok=True)
    procs.append(subprocess.Popen([os.environ.get("LMS_SERVE", "build/lm-sandbox-serve"),"--listen",f"127.0.0.1:{p}","--state-dir",f"{STATE}/st-{n}","--node-id",n,"--peers",peers],stderr=subprocess.DEVNULL))
A,B=f"http://127.0.0.1:{pa}",f"http://127.0.0.1:{pb}"
for u in (A,B):
    for _ in range(100):
        try: requests.get(u+"/healthz"); break
        except Exception: time.sleep(0.1)
s=requests.Session(); s.trust_env=False
sid=s.post(A+"/v1/sandboxes",json={}).json()["id"]
def t(url, n=50, **kw):
    xs=[]
    for _ in range(n):
        t0=time.perf_counter(); r=s.post(url,json={"cmd":"true"}); assert r.status_code==200, r.text; xs.append((time.perf_counter()-t0)*1000)
    return statistics.median(xs)
def g(url,n=200):
    xs=[]
    for _ in range(n):
        t0=time.perf_counter(); r=s.get(url); assert r.status_code==200; xs.append((time.perf_counter()-t0)*1000)
    return statistics.median(xs)
big=os.urandom(64<<20)
def up(url):
    t0=time.perf_counter(); r=s.put(url,data=big); assert r.status_code==201, r.text; return len(big)/(time.perf_counter()-t0)/2**20
def down(url):
    t0=time.perf_counter(); r=s.get(url); assert r.content==big; return len(big)/(time.perf_counter()-t0)/2**20
print(f"GET sandbox: direct {g(A+'/v1/sandboxes/'+sid):.2f} ms, via peer {g(B+'/v1/sandboxes/'+sid):.2f} ms (median of 200)")
print(f"exec true: direct {t(A+'/v1/sandboxes/'+sid+'/exec'):.2f} ms, via peer {t(B+'/v1/sandboxes/'+sid+'/exec'):.2f} ms (median of 50)")
print(f"upload 64 MiB: direct {up(A+'/v1/sandboxes/'+sid+'/files/work/b'):.0f} MiB/s, via peer {up(B+'/v1/sandboxes/'+sid+'/files/work/b'):.0f} MiB/s")
print(f"download 64 MiB: direct {down(A+'/v1/sandboxes/'+sid+'/files/work/b'):.0f} MiB/s, via peer {down(B+'/v1/sandboxes/'+sid+'/files/work/b'):.0f} MiB/s")
s.delete(A+"/v1/sandboxes/"+sid)
for p in procs: p.terminate(); p.wait(10)
