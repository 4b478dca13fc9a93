import os, time
import torch, nvmsim.data as D
from torch import nn
torch.manual_seed(0); torch.set_num_threads(1)
xtr, ytr = D.load("mnist", "train", data_dir=os.environ.get("NVMSIM_DATA"))
xte, yte = D.load("mnist", "test", data_dir=os.environ.get("NVMSIM_DATA"))
print(xtr.shape, xtr.dtype, float(xtr.min()), float(xtr.max()))
m = nn.Sequential(nn.Flatten(), nn.Linear(784,300), nn.ReLU(), nn.Linear(300,10))
opt = torch.optim.Adam(m.parameters(), 1e-3)
t=time.time()
for ep in range(2):
    perm = torch.randperm(len(xtr))
    for i in range(0, len(xtr), 128):
        idx = perm[i:i+128]
        loss = nn.functional.cross_entropy(m(xtr[idx]), ytr[idx])
        opt.zero_grad(); loss.backward(); opt.step()
    with torch.no_grad(): acc = (m(xte).argmax(1)==yte).float().mean()
    print(ep, float(loss), float(acc), time.time()-t)
torch.save(m.state_dict(), "mlp300.pt")
torch.save({"x": xte[:1000].clone(), "y": yte[:1000].clone()}, "test1000.pt")
with torch.no_grad(): print("acc1000", float((m(xte[:1000]).argmax(1)==yte[:1000]).float().mean()))
