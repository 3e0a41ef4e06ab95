"""The GPU path: every check here runs on CUDA and is skipped cleanly without it (marker ``cuda``;
``pytest -m cuda`` runs them alone, as benchmarks/gpu_check.sh does)."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import close

pytestmark = pytest.mark.cuda
DIGITS = ["train", "--data", "digits", "--quiet", "--epochs", "3", "--seed", "1"]


def test_data_sets_live_on_the_gpu_once_and_training_matches_the_cpu(cli, tmp_path):
    for name, device in (("cpu", "cpu"), ("gpu", "cuda")):
        rc, _, err = cli(*DIGITS, "--device", device, "--out", tmp_path, "--name", name)
        assert rc == 0, err
    cpu, gpu = (json.loads((tmp_path / n / "metrics.json").read_text()) for n in ("cpu", "gpu"))
    assert abs(cpu["test"]["accuracy"] - gpu["test"]["accuracy"]) < 0.03


@pytest.mark.parametrize("precision", ["bf16", "16"])
def test_mixed_precision_on_the_gpu_stays_near_float32(cli, tmp_path, precision):
    for name, extra in (("f32", []), ("amp", ["--precision", precision, "--channels-last"])):
        rc, _, err = cli(*DIGITS, "--device", "cuda", "--out", tmp_path, "--name", name, *extra)
        assert rc == 0, err
    a, b = (json.loads((tmp_path / n / "metrics.json").read_text()) for n in ("f32", "amp"))
    assert abs(a["test"]["accuracy"] - b["test"]["accuracy"]) < 0.04
    assert b["test"]["loss"] == pytest.approx(a["test"]["loss"], abs=0.05)


def test_compiled_training_on_the_gpu(cli, tmp_path):
    rc, _, err = cli(*DIGITS, "--device", "cuda", "--compile", "--out", tmp_path, "--name", "c")
    assert rc == 0, err
    assert json.loads((tmp_path / "c" / "metrics.json").read_text())["test"]["accuracy"] > 0.8


def test_training_with_cuda_graphs_through_the_cli_matches_training_without(cli, tmp_path):
    for name, extra in (("plain", []), ("graphs", ["--cuda-graphs"])):
        rc, _, err = cli(*DIGITS, "--device", "cuda", "--out", tmp_path, "--name", name, *extra)
        assert rc == 0, err
    assert json.loads((tmp_path / "graphs/config.json").read_text())["cuda_graphs"] is True
    a, b = (json.loads((tmp_path / n / "metrics.json").read_text()) for n in ("plain", "graphs"))
    assert b["test"]["loss"] == pytest.approx(a["test"]["loss"], abs=0.02)


@pytest.mark.parametrize("name", ["sgd", "momentum", "rmsprop", "adam"])
def test_fused_optimizers_on_the_gpu_follow_the_reference(name):
    from deepnotes.optim import create_optimizer

    g = torch.Generator().manual_seed(0)
    start = [torch.randn(257, 33, generator=g), torch.randn(129, generator=g)]
    grads = [[torch.randn_like(p) for p in start] for _ in range(30)]
    results = {}
    for impl, device in (("fused", "cuda"), ("reference", "cpu")):
        params = [p.clone().to(device).requires_grad_() for p in start]
        opt = create_optimizer(name, params, implementation=impl)
        for step in grads:
            for p, gr in zip(params, step):
                p.grad = gr.to(device)
            opt.step()
        results[impl] = [p.detach().cpu() for p in params]
    for a, b in zip(results["fused"], results["reference"]):
        close(a, b, rtol=1e-4, atol=1e-5)


@pytest.fixture
def float32_cudnn():
    """cuDNN in true float32: its recurrent layers use TensorFloat-32 by default (10-bit
    mantissa, relative errors near 5e-4), which would hide a wrong weight under the rounding."""
    saved = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32 = saved


@pytest.mark.parametrize("layer", ["LSTM", "GRU", "RNN"])
def test_recurrent_layers_on_the_gpu_match_the_cpu(layer, float32_cudnn):
    import deepnotes.nn as dnn

    torch.manual_seed(0)
    cpu = getattr(dnn, layer)(16, 32, num_layers=2, bidirectional=True)
    gpu = getattr(dnn, layer)(16, 32, num_layers=2, bidirectional=True).cuda()
    gpu.load_state_dict(cpu.state_dict())
    x = torch.randn(4, 9, 16)
    out_cpu, _ = cpu(x)
    out_gpu, _ = gpu(x.cuda())
    close(out_gpu.cpu(), out_cpu, rtol=1e-4, atol=1e-5)
    out_gpu.sum().backward()
    out_cpu.sum().backward()
    for (_, a), (_, b) in zip(gpu.named_parameters(), cpu.named_parameters()):
        close(a.grad.cpu(), b.grad, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("layer, options", [("LSTM", {}), ("GRU", {"reset_after": True}),
                                             ("RNN", {})])
def test_fused_layers_keep_their_weights_in_cudnns_buffer(layer, options):
    """After .cuda(), a step and a load_state_dict, the parameters are still views of one flat
    buffer in cuDNN's layout: its kernel, called with them as warnings turn into errors, takes
    them in place ("weights are not part of single contiguous chunk" would say it copies)."""
    import warnings

    import deepnotes.nn as dnn

    torch.manual_seed(0)
    model = getattr(dnn, layer)(16, 32, num_layers=2, bidirectional=True, **options).cuda()
    optimizer = torch.optim.Adam(model.parameters())
    x = torch.randn(4, 9, 16, device="cuda")
    model(x)[0].sum().backward()
    optimizer.step()
    model.load_state_dict(getattr(dnn, layer)(16, 32, 2, True, **options).state_dict())
    weights = model._torch_weights()
    assert len({w.untyped_storage().data_ptr() for w in weights}) == 1
    kernel = getattr(torch._VF, model.cells[0].torch_mode)
    h = torch.zeros(4, 4, 32, device="cuda")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = kernel(x, (h, h) if layer == "LSTM" else h, weights, True, 2, 0.0, True, True,
                     True)[0]
    close(out, model(x)[0], rtol=1e-6, atol=1e-6)


def test_a_replayed_function_equals_itself_and_is_captured_on_its_second_shape_sighting():
    from deepnotes import graphs

    def fn(x, w, keep, twice):  # ten small kernels, a flag and an optional tensor
        y = x
        for _ in range(5):
            y = torch.tanh(y @ w)
        return (y, y) if twice else y * keep

    replayed = graphs.Replayed(fn, limit=2)
    w = torch.randn(8, 8, device="cuda") / 3
    for i in range(4):
        x = torch.randn(4, 8, device="cuda")
        got, again = replayed(x, w, None, True)
        close(got, fn(x, w, None, True)[0], rtol=1e-6, atol=1e-6)
        assert got is again and len(replayed.graphs) == (i > 0)
    keep = torch.rand(4, 8, device="cuda")
    first = replayed(x, w, keep, False)
    second = replayed(x * 2, w, keep, False)  # captured now; the first result is not overwritten
    close(first, fn(x, w, keep, False), rtol=1e-6, atol=1e-6)
    close(second, fn(x * 2, w, keep, False), rtol=1e-6, atol=1e-6)
    replayed(torch.randn(5, 8, device="cuda"), w, None, True)
    replayed(torch.randn(5, 8, device="cuda"), w, None, True)
    assert len(replayed.graphs) == 2  # the limit: a third shape runs as it is


@pytest.mark.parametrize("layer, options", [("GRU", {}), ("GRU", {"full": False}),
                                             ("LSTM", {"output_tanh": False})])
def test_the_cell_path_replayed_from_cuda_graphs_matches_the_cpu(layer, options):
    """Three steps of new data through the notes' cells on both devices (the second and third
    replay the captured loops): outputs, states and every gradient agree."""
    import copy

    import deepnotes.nn as dnn
    from deepnotes.nn import bptt

    torch.manual_seed(0)
    cpu = getattr(dnn, layer)(16, 32, num_layers=2, bidirectional=True, **options)
    gpu = copy.deepcopy(cpu).cuda()
    assert not gpu.fused
    lengths = torch.tensor([9, 4, 7, 1])
    for _ in range(3):
        x = torch.randn(4, 9, 16)
        results = []
        for model, xi in ((cpu, x), (gpu, x.cuda())):
            model.zero_grad()
            out, state = model(xi, lengths=lengths)
            finals = list(state) if isinstance(state, tuple) else [state]
            (out.square().sum() + sum(f.sum() for f in finals)).backward()
            results.append([[out, *finals], [p.grad for p in model.parameters()]])
        (values, grads), (gpu_values, gpu_grads) = results
        for a, b in zip(values, gpu_values):
            close(b.cpu(), a, rtol=1e-4, atol=1e-5)
        for a, b in zip(grads, gpu_grads):  # as test_recurrent_layers_on_the_gpu_match_the_cpu
            close(b.cpu(), a, rtol=1e-3, atol=1e-4)
    captured = [g for loop in bptt._LOOPS.values() for g in loop.replayed.graphs.values()]
    assert captured and all(g is not None for g in captured)


def test_word2vec_minibatch_path_on_the_gpu_separates_two_topics():
    import random

    from deepnotes.embeddings import Word2Vec

    rng = random.Random(0)
    groups = [[f"a{i}" for i in range(10)], [f"b{i}" for i in range(10)]]
    sents = [[rng.choice(groups[k % 2]) for _ in range(8)] for k in range(1500)]
    m = Word2Vec(sents, sg=1, min_count=1, vector_size=20, window=3, epochs=5, sample=0,
                 device="cuda", implementation="minibatch")
    x = torch.nn.functional.normalize(m.wv.vectors.float().cpu(), dim=1)
    ia = torch.tensor([m.wv.key_to_index[w] for w in groups[0]])
    ib = torch.tensor([m.wv.key_to_index[w] for w in groups[1]])
    assert (x[ia] @ x[ia].T).mean() > (x[ia] @ x[ib].T).mean() + 0.3


@pytest.mark.parametrize("sg", [1, 0])
def test_word2vec_steps_replayed_from_cuda_graphs_train_as_the_steps_themselves(sg, monkeypatch):
    """The same seeded mini-batch training on the GPU with its steps replayed from CUDA graphs
    and run as they are: the same vectors (up to the order of atomic adds), and graphs were
    captured and replayed."""
    import random

    from deepnotes import graphs
    from deepnotes.embeddings import Word2Vec, word2vec

    made = []

    class Recorded(graphs.Replayed):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(word2vec, "Replayed", Recorded)
    rng = random.Random(0)
    sents = [[f"w{rng.randrange(30)}" for _ in range(12)] for _ in range(800)]
    options = dict(sg=sg, min_count=1, vector_size=16, window=2, epochs=3, seed=3,
                   batch_centres=64, device="cuda", implementation="minibatch")
    replayed = Word2Vec(sents, **options).wv.vectors.float().cpu()
    assert made and any(entry is not None for entry in made[-1].graphs.values())
    monkeypatch.setattr(graphs, "ENABLED", False)
    plain = Word2Vec(sents, **options).wv.vectors.float().cpu()
    close(replayed, plain, rtol=1e-3, atol=1e-5)


def test_float16_loss_scale_survives_a_resume(cli, tmp_path):
    args = [*DIGITS, "--device", "cuda", "--precision", "16", "--schedule", "constant"]
    rc, _, err = cli(*args, "--epochs", 1, "--out", tmp_path, "--name", "r")
    assert rc == 0, err
    state = json.loads((tmp_path / "r" / "state.json").read_text())
    assert state["scaler"]["scale"] > 0
    rc, _, err = cli("train", "--resume", tmp_path / "r", "--epochs", 2, "--allow-changes",
                     "--quiet")
    assert rc == 0, err
    assert json.loads((tmp_path / "r" / "state.json").read_text())["epoch"] == 2


def test_the_fast_recipe_on_the_gpu(cli, tmp_path):
    from deepnotes.train import Trainer

    rc, _, err = cli("train", "--recipe", "fast", "--data", "digits", "--augment", "crop",
                     "--epochs", "4", "--batch-size", "128", "--device", "cuda", "--quiet",
                     "--out", tmp_path, "--name", "f")
    assert rc == 0, err
    config = json.loads((tmp_path / "f/config.json").read_text())
    assert config["precision"] == "bf16" and config["channels_last"] is True
    history = (tmp_path / "f/history.csv").read_text().splitlines()
    assert len(history) == 1 + 4
    assert json.loads((tmp_path / "f/metrics.json").read_text())["test"]["accuracy"] > 0.8
    model = torch.nn.Linear(3, 2)
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), 0.1), epochs=1,
                      device="cuda", progress=False)
    assert trainer.read_every == 25  # the step losses of a GPU are read in groups


def test_a_training_step_on_the_gpu_never_waits_for_it():
    """Augmenting, normalising and a lazy step queue work on the GPU without one synchronising
    call (torch's sync debug mode raises on any), so the CPU runs ahead of the GPU."""
    from deepnotes.data import Normalizer
    from deepnotes.data.augment import Augment
    from deepnotes.data.loader import generator_on
    from deepnotes.models import create_model
    from deepnotes.optim import create_optimizer
    from deepnotes.train import Trainer

    x = torch.randint(0, 256, (32, 1, 28, 28), dtype=torch.uint8, device="cuda")
    y = torch.randint(0, 10, (32,), device="cuda")
    model = create_model("fastnet", num_classes=10, in_channels=1)
    trainer = Trainer(model, create_optimizer("adam", model.parameters()), epochs=1,
                      device="cuda", progress=False, precision="bf16", channels_last=True)
    normalizer, augment = Normalizer([0.3], [0.3], 1 / 255), Augment(("crop", "flip"))
    for _ in range(2):  # the first step copies the normaliser's numbers and builds the state
        batch = normalizer(augment(x, generator_on(x.device, 7)))
        trainer._step(batch, y, lazy=True)
        torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        batch = normalizer(augment(x, generator_on(x.device, 8)))
        loss, correct, counted = trainer._step(batch, y, lazy=True)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert loss.device.type == "cuda" and int(counted) == 32 and 0 <= int(correct) <= 32


def test_training_steps_replayed_from_cuda_graphs_train_as_the_steps_themselves():
    """The fast recipe's network, bf16 and NHWC as the recipe runs it, trained for a few steps
    (a short batch among them) with cuda_graphs on and off: the same weights and running
    averages (up to the order of cuDNN's reductions), and the full batches were replayed."""
    import copy

    from deepnotes.graphs import GraphedNetwork
    from deepnotes.models import create_model
    from deepnotes.optim import create_optimizer
    from deepnotes.train import Trainer

    torch.manual_seed(0)
    model = create_model("fastnet", num_classes=10, in_channels=1, widths=(16, 32, 32))
    trainers = []
    for graphs_on in (True, False):
        m = copy.deepcopy(model)
        trainers.append(Trainer(m, create_optimizer("momentum", m.parameters(), lr=0.01), epochs=1,
                                device="cuda", progress=False, precision="bf16",
                                channels_last=True, cuda_graphs=graphs_on))
    graphed, plain = trainers
    assert isinstance(graphed.net, GraphedNetwork) and not isinstance(plain.net, GraphedNetwork)
    g = torch.Generator(device="cuda").manual_seed(1)
    for n in (64, 64, 64, 40, 64, 64):
        x = torch.randn(n, 1, 28, 28, device="cuda", generator=g)
        y = torch.randint(0, 10, (n,), device="cuda", generator=g)
        for trainer in trainers:
            trainer.train_step(x, y)
    assert graphed.net.failed is None and graphed.net.key is not None
    for a, b in zip(graphed.model.state_dict().values(), plain.model.state_dict().values()):
        close(a.float().cpu(), b.float().cpu(), rtol=2e-2, atol=2e-3)


def test_the_distributed_helpers_run_on_nccl(tmp_path):
    """NCCL, the backend of GPU ranks, in a one-rank group (one GPU cannot hold two NCCL ranks):
    the sums, the broadcast and the barrier of distributed.py, and DDP's gradient equals the
    bare model's."""
    import copy

    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from deepnotes.train import distributed

    torch.cuda.set_device(0)
    dist.init_process_group("nccl", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0,
                            world_size=1, device_id=torch.device("cuda", 0))
    try:
        assert distributed.active() and dist.get_backend() == "nccl"
        assert distributed.all_sum([1.5, 2.0], torch.device("cuda", 0)) == [1.5, 2.0]
        assert distributed.broadcast({"epoch": 3}) == {"epoch": 3}
        assert distributed.shard() == (0, 1)
        torch.manual_seed(0)
        bare = torch.nn.Linear(8, 3).cuda()
        ddp = DistributedDataParallel(copy.deepcopy(bare), device_ids=[0])
        x = torch.randn(16, 8, device="cuda")
        for model in (bare, ddp):
            model(x).square().mean().backward()
        close(ddp.module.weight.grad, bare.weight.grad, rtol=1e-5, atol=1e-6)
        distributed.barrier()
    finally:
        dist.destroy_process_group()


def test_a_word2vec_step_on_the_gpu_never_waits_for_it_and_matches_the_cpu():
    """The mini-batch path's skip-gram and CBOW steps (the row cap included) queue on the GPU
    without one synchronising call, and update the tables as the same steps on the CPU do."""
    from deepnotes.embeddings.word2vec import cbow_step, sg_step

    g = torch.Generator().manual_seed(0)
    V, d, B, W, K = 40, 8, 64, 2, 5
    tables = [torch.randn(V, d, generator=g) * 0.1 for _ in range(2)]
    span = torch.randint(0, V, (B + 2 * W,), generator=g)
    valid = torch.rand(B, 2 * W + 1, generator=g) < 0.7
    negs = torch.randint(0, V, (B, K), generator=g)
    cpu = [t.clone() for t in tables]
    gpu = [t.cuda() for t in tables]
    on_gpu = [t.cuda() for t in (span, valid, negs)]
    sg_step(*gpu, *on_gpu, 0.025, 4.0)  # the first call loads the kernels
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for step in (sg_step, cbow_step):
            step(*gpu, *on_gpu, 0.025, 4.0)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    for step in (sg_step, sg_step, cbow_step):
        step(*cpu, span, valid, negs, 0.025, 4.0)
    for a, b in zip(gpu, cpu):
        close(a, b, rtol=1e-4, atol=1e-6)


def test_streamed_batches_reach_the_gpu_as_they_are_on_the_cpu(tmp_path):
    """A cache's batches gathered into pinned buffers and copied without blocking, a batch
    ahead: on the GPU they are the CPU's, epoch after epoch (no buffer reused too early)."""
    from conftest import write_photos
    from deepnotes.data import Batches, Normalizer
    from deepnotes.data.images import load_image_folder

    data = load_image_folder(write_photos(tmp_path / "photos", per_class=40), 16, cache="on",
                             cache_dir=tmp_path / "cache")
    norm = Normalizer.fit_blocks(data.x, torch.arange(120))
    kw = dict(shuffle=True, seed=2, stream=True)
    cpu = Batches(data.x, data.y, torch.arange(120), 16, norm, **kw)
    gpu = Batches(data.x, data.y, torch.arange(120), 16, norm, device="cuda", **kw)
    for epoch in range(3):
        got = list(gpu.epoch(epoch))
        for (xc, yc), (xg, yg) in zip(cpu.epoch(epoch), got, strict=True):
            assert xg.device.type == "cuda"
            assert torch.equal(xg.cpu(), xc) and torch.equal(yg.cpu(), yc)
