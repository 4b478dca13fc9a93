import json
import sys
import time

import nvmsim
import torch
from compare import GMIN, XMAX, acc, cs_params, from_torch, m, nvm_config, rms, X

bits_list = [int(b) for b in sys.argv[1].split(",")]
K, B = 4, 2
for abits in bits_list:
    case = {"slices": (K, B), "dac": (8, "twos_complement"), "adc": (abits, 1.0)}
    cfg = nvm_config(case, 0).model_copy(update={"converter": nvm_config(case, 0).converter.model_copy(update={"adc_range": "auto"})})
    t = time.perf_counter()
    am = nvmsim.convert(m, cfg); am.eval()
    layers = [am[1], am[3]]
    for i, l in enumerate(layers): l.set_input_range(XMAX[i])
    with torch.no_grad(): on = am(X)
    tn = time.perf_counter() - t
    lsbs = [[float(sl._adc_lsb()[0].flatten()[0]) for sl in l.tile.slices] for l in layers]
    rngs = [[float(sl.adc_range.flatten()[0]) for sl in l.tile.slices] for l in layers]
    s = 2 ** (abits - 1) - 1
    ucs = (1 - GMIN) / (127 * (2 ** B - 1))
    ps = []
    for i in range(2):
        p = cs_params(case, i)
        p.xbar.adc.mvm.calibrated_range = [[-lsbs[i][j] * ucs * s, lsbs[i][j] * ucs * s] for j in range(K)]
        ps.append(p)
    t = time.perf_counter()
    ac = from_torch(m, ps); ac.eval()
    with torch.no_grad(): oc = ac(X)
    tc = time.perf_counter() - t
    r = {"case": f"slice{K}x{B}_dac8_adc{abits}_auto(pow2 LSB)", "nvm_lsb_int_units": lsbs, "nvm_calibrated_range_int_units": rngs,
         "cs_acc": acc(oc), "nvm_acc": acc(on), "maxdiff": float((oc - on).abs().max()),
         "frac_logits_diff_gt_1e-3": float(((oc - on).abs() > 1e-3).float().mean()),
         "argmax_agree": float((oc.argmax(1) == on.argmax(1)).float().mean()),
         "cs_logit_err_rms": rms(oc), "nvm_logit_err_rms": rms(on), "cs_t": tc, "nvm_t": tn}
    print(json.dumps(r), flush=True)
    with open("results_slice_adc.jsonl", "a") as f: f.write(json.dumps(r) + "\n")
