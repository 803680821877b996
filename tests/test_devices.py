"""gptlab.devices: the default device, and a one-line error (exit status 2) for a device torch does not know
or this machine does not have, through the library and `gptlab sample --device`; which copies are pinned and
non-blocking; the evaluation dtype."""

from pathlib import Path

import numpy as np
import pytest
import torch

from gptlab.cli import main
from gptlab.devices import copy_options, eval_dtype, host_to_device, pick_device
from gptlab.errors import GptlabError

HF = Path(__file__).parent / "fixtures" / "peers" / "hf_gpt2" / "trained_200steps"


def test_default_is_cuda_when_present_else_cpu():
    want = "cuda" if torch.cuda.is_available() else "cpu"
    assert pick_device(None) == torch.device(want) and pick_device("") == torch.device(want)
    assert pick_device("cpu") == torch.device("cpu") and pick_device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.parametrize("name, words", [("foo", ["--device foo", "not a device"]),
                                         ("cuda:x", ["--device cuda:x", "not a device"]),
                                         ("cuda:99", ["--device cuda:99", "CUDA"])])
def test_unknown_or_absent_devices_are_one_line_errors(name, words):
    with pytest.raises(GptlabError) as e:
        pick_device(name)
    assert all(w in str(e.value) for w in words) and "\n" not in str(e.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_says_so():
    with pytest.raises(GptlabError, match="CUDA is not available here"):
        pick_device("cuda")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_devices_that_exist_are_given():
    assert pick_device("cuda").type == "cuda"
    assert pick_device(f"cuda:{torch.cuda.device_count() - 1}").index == torch.cuda.device_count() - 1


@pytest.mark.parametrize("device", ["foo", "cuda:99"])
def test_sample_with_a_bad_device_exits_2_with_one_line(device, capsys):
    assert main(["sample", str(HF), "def ", "--max-tokens", "2", "--device", device]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith(f"gptlab: error: --device {device}: ") and err.count("\n") == 1


def test_pinned_non_blocking_copies_only_for_cuda():
    """The training loader's host -> device copies: pinned and non-blocking for CUDA devices alone (a CPU copy
    through pinned memory would only cost a copy)."""
    assert copy_options(torch.device("cuda")) == (True, True) and copy_options("cuda:1") == (True, True)
    assert copy_options(torch.device("cpu")) == (False, False) and copy_options("meta") == (False, False)
    a = np.arange(12, dtype=np.int64).reshape(3, 4)[:, 1:]          # a view, as the batch sampler hands out
    t = host_to_device(a, torch.device("cpu"))
    assert t.device.type == "cpu" and not t.is_pinned() and t.tolist() == a.tolist()


def test_eval_dtype_is_bfloat16_on_cuda_only_when_auto():
    cpu = torch.device("cpu")
    assert eval_dtype("auto", cpu) is None and eval_dtype(None, cpu) is None       # the checkpoint's own
    assert eval_dtype("bfloat16", cpu) == torch.bfloat16 and eval_dtype("float32", cpu) == torch.float32
    with pytest.raises(GptlabError, match="--dtype half: expected one of auto, float32, bfloat16"):
        eval_dtype("half", cpu)
    if torch.cuda.is_available():
        assert eval_dtype("auto", torch.device("cuda")) == (torch.bfloat16 if torch.cuda.is_bf16_supported()
                                                            else None)
