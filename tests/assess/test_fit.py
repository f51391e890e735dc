"""Over/under-fitting made visible: the diagnosis a user tuning by hand reads in the final report."""

from pipeline.assess.fit import accuracy_gap, diagnose


def _epoch(loss, val_loss, acc, val_acc):
    return {"loss": loss, "val_loss": val_loss, "accuracy": acc, "val_accuracy": val_acc}


def test_validation_loss_rising_while_train_loss_falls_is_over_fitting():
    epochs = [_epoch(0.5, 0.30, 0.90, 0.92), _epoch(0.3, 0.25, 0.94, 0.94), _epoch(0.2, 0.27, 0.96, 0.94),
              _epoch(0.1, 0.31, 0.98, 0.95)]
    assert diagnose(epochs).startswith("over-fitting: validation loss rose for the last 2 epochs while train loss "
                                       "fell (accuracy gap +0.030)")


def test_a_wide_accuracy_gap_is_over_fitting_too():
    assert diagnose([_epoch(0.2, 0.3, 0.95, 0.96), _epoch(0.1, 0.29, 0.99, 0.94)]).startswith(
        "over-fitting: train accuracy 0.990 is 0.050 above validation 0.940")


def test_under_fitting_names_the_reason_that_fired():
    falling = [_epoch(0.74, 0.24, 0.77, 0.93), _epoch(0.23, 0.13, 0.93, 0.96), _epoch(0.14, 0.09, 0.958, 0.972)]
    assert diagnose(falling) == ("under-fitting: both losses were still falling at the last epoch (validation "
                                 "0.972, gap -0.014); more epochs, a higher learning rate or a wider model may help")
    flat_and_low = [_epoch(1.2, 1.1, 0.60, 0.62), _epoch(1.2, 1.2, 0.61, 0.62)]  # neither loss falls
    assert diagnose(flat_and_low).startswith("under-fitting: train accuracy 0.610 is below 0.90 (validation 0.620")
    assert "falling" not in diagnose(flat_and_low)
    both = [_epoch(1.3, 1.2, 0.60, 0.62), _epoch(1.2, 1.1, 0.61, 0.62)]
    assert diagnose(both).startswith("under-fitting: train accuracy 0.610 is below 0.90 and both losses were still "
                                     "falling at the last epoch")


def test_a_flat_validation_loss_with_a_small_gap_is_balanced():
    assert diagnose([_epoch(0.3, 0.15, 0.95, 0.97), _epoch(0.2, 0.15, 0.96, 0.97)]) == \
        "balanced: train accuracy 0.960, validation 0.970 (gap -0.010); validation loss has stopped falling " \
        "without rising"
    assert accuracy_gap(_epoch(0, 0, 0.9, 0.85)) == 0.9 - 0.85
    assert diagnose([]) == "no epochs recorded"
