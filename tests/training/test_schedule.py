import pytest
import torch

from r1lab.training.schedule import cosine_lr, cosine_schedule, warmup_steps_for


def test_cosine_lr_by_hand():
    # lr_max 1, lr_min 0.1, 2 warm-up steps, 6 steps. Warm-up: (s+1)/3 up to the peak at
    # step 2; then 0.1 + 0.45 (1 + cos(pi p)) with p = (s - 2) / 3: p = 1/3 gives
    # 0.1 + 0.45 * 1.5 = 0.775, p = 2/3 gives 0.1 + 0.45 * 0.5 = 0.325, p = 1 gives 0.1.
    lrs = [cosine_lr(s, 6, 1.0, 0.1, 2) for s in range(6)]
    assert lrs == pytest.approx([1 / 3, 2 / 3, 1.0, 0.775, 0.325, 0.1])


def test_cosine_lr_report_values_without_warmup():
    # 5e-5 -> 5e-6 over 3 steps: the midpoint is the mean, 2.75e-5.
    lrs = [cosine_lr(s, 3, 5e-5, 5e-6, 0) for s in range(3)]
    assert lrs == pytest.approx([5e-5, 2.75e-5, 5e-6])
    assert cosine_lr(10, 3, 5e-5, 5e-6, 0) == pytest.approx(5e-6)  # past the end: stays at min


def test_cosine_lr_degenerate_lengths():
    assert cosine_lr(0, 1, 1.0, 0.1, 0) == 1.0
    assert cosine_lr(0, 2, 1.0, 0.1, 1) == pytest.approx(0.5)
    assert cosine_lr(1, 2, 1.0, 0.1, 1) == 1.0


def test_warmup_steps_for():
    assert warmup_steps_for(100, None, 0.05) == 5
    assert warmup_steps_for(100, 7, 0.05) == 7
    assert warmup_steps_for(3, 10, 0.0) == 2  # never the whole run


def test_cosine_schedule_drives_the_optimizer():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=123.0)
    sched = cosine_schedule(opt, total_steps=6, lr_max=1.0, lr_min=0.1, warmup_steps=2)
    seen = []
    for _ in range(6):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx([1 / 3, 2 / 3, 1.0, 0.775, 0.325, 0.1])


def test_cosine_schedule_resumes_from_state_dicts():
    # As the trainer restores a checkpoint: optimizer (holds the current lr) and scheduler.
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = cosine_schedule(opt, 6, 1.0, 0.1, 2)
    for _ in range(3):
        opt.step()
        sched.step()
    opt2 = torch.optim.SGD([p], lr=1.0)
    sched2 = cosine_schedule(opt2, 6, 1.0, 0.1, 2)
    opt2.load_state_dict(opt.state_dict())
    sched2.load_state_dict(sched.state_dict())
    seen = []
    for _ in range(3):
        seen.append(opt2.param_groups[0]["lr"])
        opt2.step()
        sched2.step()
    assert seen == pytest.approx([0.775, 0.325, 0.1])
