"""The graph alone on the oracle's real nodes (an experiment of chapter 7).

Between the graph alone (``dyreg_edu.relation``: clean one-hot classes and steps) and the oracle
model (its nodes from the backbone, its answer through remap, residual, layer3 and head) this asks
the graph alone's question of the oracle's own nodes: the mini scale's trained, frozen digit
backbone (14-pixel digits, steps up to 5 pixels) -> the oracle block's pooling of the digits'
boxes + its positional embedding + its ``node_motion`` embedding (both reading kernels times
``position_scale``) -> the graph -> a linear head on the nodes averaged over digits and frames,
trained (AdamW 2e-3, batch 64) on the 56-class label; 1,000 validation videos every 250 steps.
It prints one JSON line per evaluation (``s``: seconds since the start)::

    python tools/oracle_nodes_probe.py NAME POSITION_SCALE STEPS   # e.g. motion_s30 30 3000

(``NAME`` containing ``nomotion`` leaves ``node_motion`` off; containing ``onehot`` adds to each node a
Linear of its digit's one-hot class from the generator, the graph alone's clean class.)
"""
import json
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

from dyreg_edu import train
from dyreg_edu.kernels import pool_nodes


def main(argv):
    name, scale, steps = argv[0], float(argv[1]), int(argv[2])
    motion, onehot = "nomotion" not in name, "onehot" in name
    torch.manual_seed(0)
    cfg = train.config("oracle", "mini", "fast", digit_size=14, max_step=5.0,
                       block={"node_motion": motion, "position_scale": scale})
    model = train.build_model(cfg)
    train.load_digit_backbone(cfg, model, progress=False)
    train.freeze(model)
    blk, head = model.graph, nn.Linear(32, 56)
    classes = nn.Linear(10, 32) if onehot else None
    params = [p for n, p in blk.named_parameters() if not n.startswith("residual")] + list(head.parameters())
    params += list(classes.parameters()) if onehot else []
    opt = torch.optim.AdamW(params, lr=2e-3, weight_decay=1e-4)
    tr, va = train.build_data(cfg, "train"), train.build_data(cfg, "val")

    def logits(batch):
        video, boxes = train.model_inputs(batch, "cpu")
        with torch.no_grad():
            x = model.features(video)
        feats = blk.project(x)
        kernels, _ = blk.kernels(feats, model.oracle_regions(boxes))
        nodes = pool_nodes(feats, kernels) + blk.position(kernels)
        if motion:
            nodes = nodes + blk.motion(kernels)
        if onehot:  # node d is digit d's (the oracle's regions are the boxes in order)
            nodes = nodes + classes(F.one_hot(batch["digits"], 10).float())[:, None]
        out, _ = blk.graph(nodes)
        return head(out.mean((1, 2)))

    val = va.batch(list(range(1000)))
    tic = time.time()
    for step in range(steps):
        b = tr.batch(list(range(step * 64, step * 64 + 64)))
        loss = F.cross_entropy(logits(b), b["label"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if (step + 1) % 250 == 0:
            with torch.no_grad():
                acc = 100 * (logits(val).argmax(-1) == val["label"]).float().mean().item()
            print(json.dumps({"step": step + 1, "loss": round(loss.item(), 4), "val_accuracy": round(acc, 2),
                              "s": round(time.time() - tic)}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
