"""Compare CrossSim 3.2 and nvmsim on a 784-300-10 MLP, 1000 MNIST test images."""
import os, sys, time, json, copy, math
os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np, torch
from torch import nn
torch.set_num_threads(1)
import warnings; warnings.filterwarnings("ignore")
from simulator import CrossSimParameters
from simulator.algorithms.dnn.torch.convert import from_torch
from simulator.parameters.core_parameters import CoreStyle, BalancedCoreStyle, BitSlicedCoreStyle
import nvmsim
from nvmsim.config import AnalogConfig

m = nn.Sequential(nn.Flatten(), nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 10))
m.load_state_dict(torch.load("mlp300.pt", weights_only=True)); m.eval()
d = torch.load("test1000.pt", weights_only=True); X, Y = d["x"], d["y"]
lin = [m[1], m[3]]
with torch.no_grad():
    h0 = X.flatten(1); h1 = torch.relu(m[1](h0))
    xin = [h0, h1]
    XMAX = [float(h0.abs().max()), float(h1.abs().max())]
    WMAX = [float(l.weight.abs().max()) for l in lin]
    # partial sums (no bias) of an ideal float forward: the "calibrated" ADC range
    RCAL = [float((xin[i] @ lin[i].weight.T).abs().max()) for i in range(2)]
ONOFF = 10.0; GMIN = 1 / ONOFF
def scale(i):  # partial-sum units (nvmsim) per CrossSim normalised ADC unit
    return XMAX[i] * WMAX[i] / (1 - GMIN)

def cs_params(case, i):
    p = CrossSimParameters()
    p.core.style = CoreStyle.BALANCED
    p.core.balanced.style = BalancedCoreStyle.ONE_SIDED
    p.xbar.device.Rmin, p.xbar.device.Rmax = 1000.0, 1000.0 * ONOFF  # Gmin/Gmax = 0.1
    p.xbar.device.clip_conductance = case.get("cs_clip_range", False)
    p.core.mapping.weights.percentile = 1.0
    p.core.mapping.inputs.mvm.min, p.core.mapping.inputs.mvm.max = -XMAX[i], XMAX[i]
    if "read" in case:
        kind, s = case["read"]
        p.xbar.device.read_noise.enable = True
        p.xbar.device.read_noise.model = {"proportional": "NormalProportionalDevice", "additive": "NormalIndependentDevice"}[kind]
        p.xbar.device.read_noise.magnitude = s
    if "prog" in case:
        kind, s = case["prog"]
        p.xbar.device.programming_error.enable = True
        p.xbar.device.programming_error.model = {"proportional": "NormalProportionalDevice", "additive": "NormalIndependentDevice"}[kind]
        p.xbar.device.programming_error.magnitude = s
    if case.get("dac"):
        bits, enc = case["dac"]
        p.xbar.dac.mvm.bits = bits
        if enc == "unsigned":
            p.xbar.dac.mvm.model = "QuantizerDAC"; p.xbar.dac.mvm.signed = False
            p.core.mapping.inputs.mvm.min = 0.0
        else:
            p.xbar.dac.mvm.model = case.get("cs_dac_model", "SignMagnitudeDAC"); p.xbar.dac.mvm.signed = True
    if case.get("adc"):
        bits, rng = case["adc"]
        R = RCAL[i] if rng == "cal" else float(rng)
        Rn = R / scale(i)
        p.xbar.adc.mvm.bits = bits
        p.xbar.adc.mvm.model = case.get("cs_adc_model", "SignMagnitudeADC")
        p.xbar.adc.mvm.signed = True
        p.xbar.adc.mvm.calibrated_range = [-Rn, Rn]
    if case.get("slices"):
        k, b = case["slices"]
        p.core.style = CoreStyle.BITSLICED
        p.core.bit_sliced.style = BitSlicedCoreStyle.BALANCED
        p.core.bit_sliced.num_slices = k
        p.core.weight_bits = case.get("cs_wbits", k * b + 1)  # CrossSim's weight_bits include the sign bit
        p.xbar.device.cell_bits = b
    return p

def nvm_config(case, seed):
    dev = {"on_off_ratio": ONOFF, "clip": case.get("nvm_clip", "zero")}
    if "read" in case:
        dev["read_noise"] = {"kind": case["read"][0], "sigma": case["read"][1]}
    if "prog" in case:
        dev["programming_error"] = {"kind": case["prog"][0], "sigma": case["prog"][1]}
    conv = {}
    if case.get("dac"):
        conv["dac_bits"], conv["input_encoding"] = case["dac"][0], case["dac"][1]
    if case.get("adc"):
        conv["adc_bits"] = case["adc"][0]
        if case["adc"][1] != "cal":
            conv["adc_range"] = float(case["adc"][1])
    xb = {"mapping": "differential", "tile_rows": 1024, "tile_cols": 1024}
    if case.get("slices"):
        xb["weight_slices"] = case["slices"][0]; dev["bits"] = case["slices"][1]
    # the read-noise stream docs/results.md's numbers were drawn with (before blocked draws)
    cfg = {"device": dev, "crossbar": xb, "converter": conv, "seed": seed, "read_noise_stream": "serial"}
    if case.get("nvm_sample"):
        cfg["read_noise_mode"] = "sample"
    return AnalogConfig.model_validate(cfg)

with torch.no_grad(): OUT0 = m(X)
def rms(out): return float((out - OUT0).pow(2).mean().sqrt())
def acc(out): return float((out.argmax(1) == Y).float().mean())

def run_cs(case, seed, bs):
    np.random.seed(1000 + seed)
    t = time.perf_counter()
    am = from_torch(m, [cs_params(case, 0), cs_params(case, 1)])
    am.eval()
    with torch.no_grad():
        out = torch.cat([am(X[j:j + bs]) for j in range(0, len(X), bs)])
    return acc(out), time.perf_counter() - t, out

def run_nvm(case, seed):
    cfg = nvm_config(case, seed)
    t = time.perf_counter()
    am = nvmsim.convert(m, cfg)
    am.eval()
    layers = [am[1], am[3]]
    if case.get("dac"):
        for i, l in enumerate(layers): l.set_input_range(XMAX[i])
    if case.get("adc") and case["adc"][1] == "cal":
        for i, l in enumerate(layers): l.tile.adc_range = torch.tensor(RCAL[i])
    with torch.no_grad():
        out = am(X)
    dt = time.perf_counter() - t
    if case.get("adc"):
        run_nvm.ranges = [float(l.tile.adc_range.flatten()[0]) for l in layers]
    return acc(out), dt, out

CASES = {
 "ideal": {},
 "read_prop_0.1": {"read": ("proportional", 0.1)},
 "read_prop_0.3": {"read": ("proportional", 0.3)},
 "read_add_0.05": {"read": ("additive", 0.05)},
 "prog_prop_0.1": {"prog": ("proportional", 0.1)},
 "prog_prop_0.3": {"prog": ("proportional", 0.3)},
 "prog_add_0.05": {"prog": ("additive", 0.05)},
 "prog_add_0.1_clipGrange": {"prog": ("additive", 0.1), "cs_clip_range": True, "nvm_clip": "range"},
 "dac8": {"dac": (8, "twos_complement")},
 "dac8_adc8_cal": {"dac": (8, "twos_complement"), "adc": (8, "cal")},
 "dac8_adc4_cal": {"dac": (8, "twos_complement"), "adc": (4, "cal")},
 "dac8_adc8_fix4": {"dac": (8, "twos_complement"), "adc": (8, 4.0)},
 "dac8_adc4_fix4": {"dac": (8, "twos_complement"), "adc": (4, 4.0)},
 "dac8u_adc4_cal": {"dac": (8, "unsigned"), "adc": (4, "cal")},
 "dac8_adc4_cal_QuantizerADC": {"dac": (8, "twos_complement"), "adc": (4, "cal"), "cs_adc_model": "QuantizerADC"},
 "dac8_QuantizerDAC": {"dac": (8, "twos_complement"), "cs_dac_model": "QuantizerDAC"},
 "slice4x2": {"slices": (4, 2), "dac": (8, "twos_complement")},
 "slice4x2_csWbits8": {"slices": (4, 2), "dac": (8, "twos_complement"), "cs_wbits": 8},
 "slice2x2": {"slices": (2, 2), "dac": (8, "twos_complement")},
 "slice4x2_read0.1": {"slices": (4, 2), "dac": (8, "twos_complement"), "read": ("proportional", 0.1)},
}

if __name__ == "__main__":
    names = sys.argv[1].split(",")
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    bs = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
    print("XMAX", XMAX, "WMAX", WMAX, "RCAL", RCAL, flush=True)
    for name in names:
        case = CASES[name]
        deterministic = not any(k in case for k in ("read", "prog"))
        n = 1 if deterministic else reps
        b = bs if "read" in case else 1000
        cs, nv, tc, tn, rc, rn = [], [], [], [], [], []
        for s in range(n):
            a, t, oc = run_cs(case, s, b); cs.append(a); tc.append(t); rc.append(rms(oc))
            a, t, on = run_nvm(case, s); nv.append(a); tn.append(t); rn.append(rms(on))
        r = {"case": name, "n": n, "cs_mean": np.mean(cs), "cs_std": np.std(cs, ddof=1) if n > 1 else 0.0,
             "nvm_mean": np.mean(nv), "nvm_std": np.std(nv, ddof=1) if n > 1 else 0.0,
             "maxdiff": float((oc - on).abs().max()), "frac_logits_diff_gt_1e-3": float(((oc - on).abs() > 1e-3).float().mean()), "argmax_agree": float((oc.argmax(1) == on.argmax(1)).float().mean()),
             "nvm_adc_ranges": getattr(run_nvm, "ranges", None),
             "cs_logit_err_rms": [np.mean(rc), np.std(rc)], "nvm_logit_err_rms": [np.mean(rn), np.std(rn)],
             "cs_t": np.mean(tc), "nvm_t": np.mean(tn), "cs": cs, "nvm": nv}
        print(json.dumps(r), flush=True)
        with open("results.jsonl", "a") as f: f.write(json.dumps(r) + "\n")
