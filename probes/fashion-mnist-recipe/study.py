"""Recipe study behind pipelines/fashion-mnist.params.yaml (teacher architecture and epochs, student
schedules, shift augmentation, KD temperature; fixed soft labels against a teacher run on each augmented
batch). PyTorch, so that it could run on a lent GPU machine in minutes (2026-12-04: `python3 study.py 12`,
then `STUDY=2 python3 study.py 10`; results in runs-2026-12-04.jsonl beside this file). It finds
directions only: the pipeline's own figures come from the pipeline. Same architectures, Adam, cosine
decay to 0, batch sizes and KD loss (alpha * CE + (1 - alpha) * T^2 * KL) as the pipeline; the validation
split is a seeded 10% of the training images, like the pipeline's but not the same rows.
Data: the IDX files of Debian's dataset-fashion-mnist (FASHION_MNIST, default its install folder).
Writes one JSON line per run to $OUT/runs.jsonl (QUICK=1: 2,000 rows and 1 epoch, a smoke run)."""
import gzip, json, os, sys, time, math
import numpy as np
import torch, torch.nn as nn, torch.nn.functional as F
import torch.multiprocessing as mp

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.environ.get('OUT', '/tmp/out')
DEV = 'cuda' if torch.cuda.is_available() else 'cpu'
QUICK = os.environ.get('QUICK') == '1'

DATA = os.environ.get('FASHION_MNIST', '/usr/share/datasets/fashion-mnist')


def idx(name):
    path = os.path.join(HERE, name) if os.path.exists(os.path.join(HERE, name)) else os.path.join(DATA, name)
    with gzip.open(path) as f:
        data = f.read()
    if 'labels' in name:
        return np.frombuffer(data, np.uint8, offset=8).astype(np.int64)
    return (np.frombuffer(data, np.uint8, offset=16).reshape(-1, 1, 28, 28).astype(np.float32) / 255.0)

def load():
    x = idx('train-images-idx3-ubyte.gz'); y = idx('train-labels-idx1-ubyte.gz')
    xt = idx('t10k-images-idx3-ubyte.gz'); yt = idx('t10k-labels-idx1-ubyte.gz')
    rng = np.random.default_rng(0)
    val = rng.random(len(x)) < 0.1
    d = dict(xtr=x[~val], ytr=y[~val], xva=x[val], yva=y[val], xte=xt, yte=yt)
    if QUICK:
        d = {k: v[:2000] for k, v in d.items()}
    return {k: torch.tensor(v, device=DEV) for k, v in d.items()}

class CNN(nn.Module):
    def __init__(self, channels, hidden, padding='valid', bn=False, dropout=0.0, double=False):
        super().__init__()
        layers, c, size = [], 1, 28
        for ch in channels:
            for _ in range(2 if double else 1):
                layers.append(nn.Conv2d(c, ch, 3, padding=1 if padding == 'same' else 0))
                if padding != 'same': size -= 2
                if bn: layers.append(nn.BatchNorm2d(ch))
                layers.append(nn.ReLU()); c = ch
            layers.append(nn.MaxPool2d(2)); size //= 2
        self.features = nn.Sequential(*layers)
        dims = [c * size * size] + list(hidden)
        fc = []
        for a, b in zip(dims[:-1], dims[1:]):
            fc += [nn.Linear(a, b), nn.ReLU()]
            if dropout > 0: fc.append(nn.Dropout(dropout))
        fc.append(nn.Linear(dims[-1], 10))
        self.head = nn.Sequential(nn.Flatten(), *fc)
    def forward(self, x): return self.head(self.features(x))

class MLP(nn.Module):
    def __init__(self, hidden):
        super().__init__()
        dims = [784] + list(hidden); fc = []
        for a, b in zip(dims[:-1], dims[1:]): fc += [nn.Linear(a, b), nn.ReLU()]
        fc.append(nn.Linear(dims[-1], 10))
        self.net = nn.Sequential(nn.Flatten(), *fc)
    def forward(self, x): return self.net(x)

def build(spec):
    if spec['arch'] == 'mlp': return MLP(spec['hidden'])
    return CNN(spec['channels'], spec['hidden'], spec.get('padding', 'valid'), spec.get('bn', False),
               spec.get('dropout', 0.0), spec.get('double', False))

def shift(x, s, gen):
    """Each image translated by up to s pixels in each axis, zero fill (student-train's augment.shift)."""
    if s == 0: return x
    n = x.shape[0]
    p = F.pad(x, (s, s, s, s))[:, 0]
    dy = torch.randint(0, 2 * s + 1, (n,), device=x.device, generator=gen)
    dx = torch.randint(0, 2 * s + 1, (n,), device=x.device, generator=gen)
    ar = torch.arange(28, device=x.device)
    rows, cols = dy[:, None] + ar, dx[:, None] + ar
    return p[torch.arange(n, device=x.device)[:, None, None], rows[:, :, None], cols[:, None, :]][:, None]

@torch.no_grad()
def logits_of(models, x, bs=4096):
    out = []
    for i in range(0, len(x), bs):
        out.append(torch.stack([m(x[i:i + bs]) for m in models]).mean(0))
    return torch.cat(out)

def acc(logits, y): return (logits.argmax(1) == y).float().mean().item()

def train(spec, data, teacher=None):
    torch.manual_seed(spec['seed'])
    gen = torch.Generator(device=DEV); gen.manual_seed(spec['seed'] + 1000)
    model = build(spec['model']).to(DEV)
    opt = torch.optim.Adam(model.parameters(), lr=spec['lr'])
    x, y = data['xtr'], data['ytr']
    n, bs = len(x), spec['bs']
    steps_per_epoch = math.ceil(n / bs)
    if QUICK: spec = dict(spec, epochs=1)
    total = steps_per_epoch * spec['epochs']
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    fixed = None
    if teacher is not None and spec.get('teach') == 'fixed':
        fixed = logits_of(teacher, x)
    T, alpha = spec.get('T', 1.0), spec.get('alpha', 1.0)
    curve = []
    for ep in range(spec['epochs']):
        model.train()
        perm = torch.randperm(n, device=DEV, generator=gen)
        for i in range(0, n, bs):
            b = perm[i:i + bs]
            xb = shift(x[b], spec.get('shift', 0), gen)
            out = model(xb)
            loss = alpha * F.cross_entropy(out, y[b]) if alpha > 0 else 0.0
            if alpha < 1:
                if fixed is not None: tl = fixed[b]
                else:
                    with torch.no_grad(): tl = torch.stack([m(xb) for m in teacher]).mean(0)
                kl = F.kl_div(F.log_softmax(out / T, 1), F.log_softmax(tl / T, 1), log_target=True, reduction='batchmean')
                loss = loss + (1 - alpha) * T * T * kl
            opt.zero_grad(set_to_none=True); loss.backward(); opt.step(); sched.step()
        model.eval()
        with torch.no_grad():
            curve.append(round(acc(logits_of([model], data['xva']), data['yva']), 5))
    model.eval()
    with torch.no_grad():
        res = dict(val=acc(logits_of([model], data['xva']), data['yva']),
                   test=acc(logits_of([model], data['xte']), data['yte']),
                   train=acc(logits_of([model], x[:10000]), y[:10000]), curve=curve)
    return model, res

TEACHERS = {
    'A7': dict(model=dict(arch='cnn', channels=[32, 64], hidden=[256]), epochs=7, lr=2e-3, bs=128),
    'A12': dict(model=dict(arch='cnn', channels=[32, 64], hidden=[256]), epochs=12, lr=2e-3, bs=128),
    'A10s1': dict(model=dict(arch='cnn', channels=[32, 64], hidden=[256]), epochs=10, lr=2e-3, bs=128, shift=1),
    'S10': dict(model=dict(arch='cnn', channels=[32, 64], hidden=[256], padding='same'), epochs=10, lr=2e-3, bs=128),
    'BN10': dict(model=dict(arch='cnn', channels=[32, 64], hidden=[256], bn=True), epochs=10, lr=2e-3, bs=128),
    'D12s1': dict(model=dict(arch='cnn', channels=[32, 64], hidden=[256], dropout=0.3), epochs=12, lr=2e-3, bs=128, shift=1),
    'V8': dict(model=dict(arch='cnn', channels=[32, 64], hidden=[256], padding='same', double=True), epochs=8, lr=2e-3, bs=128),
    'BN10s1': dict(model=dict(arch='cnn', channels=[32, 64], hidden=[256], bn=True), epochs=10, lr=2e-3, bs=128, shift=1),
}
if os.environ.get('STUDY') == '2':
    TEACHERS = {k: dict(TEACHERS['S10'], epochs=e) for k, e in (('S7', 7), ('S8', 8))}
MLP_SPEC = dict(arch='mlp', hidden=[84])
SCNN = dict(arch='cnn', channels=[8, 16], hidden=[32])
KD = [dict(alpha=1.0), dict(alpha=0.1, T=1.0), dict(alpha=0.1, T=4.0)]

def teacher_jobs():
    return [dict(kind='teacher', name=k, seed=s, **v) for k, v in TEACHERS.items() for s in (1, 2, 3)]

def student_jobs(tnames):
    jobs = []
    if os.environ.get('STUDY') == '2':
        for seed in (1, 2, 3, 4, 5):
            for model, name, lr, bs, ep in ((SCNN, 'cnn', 3e-3, 128, 5), (MLP_SPEC, 'mlp', 2e-3, 256, 20)):
                for kd in KD[:2]:
                    jobs.append(dict(kind='student', student=name, teacher=tnames[1], model=model, lr=lr, bs=bs,
                                     epochs=ep, seed=seed, shift=0, teach='fixed', **kd))
        return jobs
    for seed in (1, 2, 3, 4, 5):
        for tname in tnames:
            if seed > 3 and tname != tnames[0]: continue
            for model, name, lr, bs, eps in ((MLP_SPEC, 'mlp', 2e-3, 256, (20, 60)), (SCNN, 'cnn', 3e-3, 128, (5, 15))):
                for ep in eps:
                    for kd in KD:
                        for sh, teach in ((0, 'fixed'), (1, 'fixed'), (1, 'online')):
                            if kd['alpha'] == 1.0 and teach == 'online': continue
                            if kd['alpha'] == 1.0 and tname != tnames[0]: continue
                            jobs.append(dict(kind='student', student=name, teacher=tname, model=model, lr=lr, bs=bs,
                                             epochs=ep, seed=seed, shift=sh, teach=teach, **kd))
    return jobs

def worker(rank, nproc, phase, tnames, q):
    torch.backends.cudnn.benchmark = True
    data = load()
    if phase == 'teachers':
        jobs = teacher_jobs()
    else:
        jobs = student_jobs(tnames)
        if QUICK: jobs = jobs[:8] + [j for j in jobs if j['teacher'] != tnames[0]][:4]
    teachers = {}
    for t in tnames if phase == 'students' else []:
        ms = []
        for s in (1, 2):
            m = build(TEACHERS[t]['model']).to(DEV)
            m.load_state_dict(torch.load(os.path.join('/tmp/teachers', f'{t}-{s}.pt'), map_location=DEV))
            m.eval(); ms.append(m)
        teachers[t] = ms
    for j, job in enumerate(jobs):
        if j % nproc != rank: continue
        t0 = time.time()
        if job['kind'] == 'teacher':
            model, res = train(job, data)
            os.makedirs('/tmp/teachers', exist_ok=True)
            torch.save(model.state_dict(), os.path.join('/tmp/teachers', f"{job['name']}-{job['seed']}.pt"))
        else:
            _, res = train(job, data, teachers[job['teacher']] if job['alpha'] < 1 else None)
        job = {k: v for k, v in job.items() if k != 'model'}
        q.put(json.dumps(dict(job, **res, seconds=round(time.time() - t0, 1))))
    q.put(None)

def run_phase(phase, tnames, nproc, out):
    ctx = mp.get_context('spawn'); q = ctx.Queue()
    ps = [ctx.Process(target=worker, args=(r, nproc, phase, tnames, q)) for r in range(nproc)]
    for p in ps: p.start()
    done = 0
    while done < nproc:
        line = q.get()
        if line is None: done += 1; continue
        out.write(line + '\n'); out.flush()
    for p in ps: p.join()

def ensembles(out):
    data = load(); rows = []
    for t in TEACHERS:
        ms = []
        for s in (1, 2, 3):
            m = build(TEACHERS[t]['model']).to(DEV); m.load_state_dict(torch.load(f'/tmp/teachers/{t}-{s}.pt', map_location=DEV)); m.eval(); ms.append(m)
        for k in (2, 3):
            r = dict(kind='ensemble', name=t, members=k, val=acc(logits_of(ms[:k], data['xva']), data['yva']),
                     test=acc(logits_of(ms[:k], data['xte']), data['yte']), train=acc(logits_of(ms[:k], data['xtr'][:10000]), data['ytr'][:10000]))
            out.write(json.dumps(r) + '\n'); out.flush(); rows.append(r)
    return rows

if __name__ == '__main__':
    os.makedirs(OUT, exist_ok=True)
    nproc = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    t0 = time.time()
    with open(os.path.join(OUT, 'runs.jsonl'), 'a') as out:
        run_phase('teachers', [], nproc, out)
        print('teachers', round(time.time() - t0), 's', flush=True)
        rows = ensembles(out)
        best = max((r for r in rows if r['members'] == 2 and r['name'] != 'A7'), key=lambda r: r['val'])['name']
        if os.environ.get('STUDY') == '2': best = 'S8'
        print('best teacher by val', best, flush=True)
        run_phase('students', ['A7', best] if os.environ.get('STUDY') != '2' else ['S8', 'S8'], nproc, out)
        print('students', round(time.time() - t0), 's', flush=True)
