"""faiss IndexHNSWFlat (M 16, efConstruction 200) on .fvecs files: the reference of
benches/hnsw_recall.rs, which runs this script on the same files in the same run.

Vectors are L2-normalised (as pixdex stores them), so L2 ranks exactly as cosine. The build uses
every thread; queries are answered one at a time on one thread, as pixdex's are.

python benches/faiss_hnsw.py --base B.fvecs --query Q.fvecs --ef 16,32,64 --k 10 --json OUT.json
"""

import argparse
import json
import time

import faiss
import numpy as np


def read_fvecs(path):
    raw = np.fromfile(path, dtype=np.int32)
    dim = int(raw[0])
    vectors = raw.reshape(-1, dim + 1)[:, 1:].copy().view(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.ascontiguousarray(vectors)


def timed_queries(index, queries, k):
    """Recall is computed by the caller; returns the ids and queries per second, one at a time."""
    for q in queries[:20]:
        index.search(q[None, :], k)
    found = np.empty((len(queries), k), dtype=np.int64)
    t = time.perf_counter()
    for i, q in enumerate(queries):
        _, ids = index.search(q[None, :], k)
        found[i] = ids[0]
    return found, len(queries) / (time.perf_counter() - t)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--base", required=True)
    p.add_argument("--query", required=True)
    p.add_argument("--ef", default="16,32,64,128,256")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--json", required=True)
    a = p.parse_args()
    base, queries = read_fvecs(a.base), read_fvecs(a.query)
    n, dim = base.shape

    threads = faiss.omp_get_max_threads()
    index = faiss.IndexHNSWFlat(dim, 16)
    index.hnsw.efConstruction = 200
    t = time.perf_counter()
    index.add(base)
    build = time.perf_counter() - t

    faiss.omp_set_num_threads(1)
    flat = faiss.IndexFlatIP(dim)
    flat.add(base)
    exact, exact_qps = timed_queries(flat, queries, a.k)
    rows = []
    for ef in [int(e) for e in a.ef.split(",")]:
        index.hnsw.efSearch = ef
        found, qps = timed_queries(index, queries, a.k)
        hits = sum(len(set(f) & set(e)) for f, e in zip(found, exact))
        rows.append({"ef": ef, "recall_at_10": hits / (a.k * len(queries)), "qps": qps})
    with open(a.json, "w") as f:
        json.dump({"n": n, "dim": dim, "build_seconds": build, "build_threads": threads,
                   "exact_qps": exact_qps, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
