"""Train a small convolutional network on scikit-learn's 8x8 handwritten digits with symdiff.

    conv 3x3, 1 -> 16 channels, 'same' padding, + bias, relu, 2x2 max pool   (16 x 4 x 4)
    conv 3x3, 16 -> 32 channels, 'same' padding, + bias, relu, 2x2 max pool  (32 x 2 x 2)
    dense 128 -> 10, softmax cross-entropy

Each convolution applies one small filter at every position of its input (weight
tying), so a filter's gradient is the sum over every place it was applied; sd.grad
builds it as another convolution.  The loss, the logits and the gradients for every
weight are one graph, compiled once by ``sd.function`` into one kernel whose batch
size is ``None``: the same kernel serves the minibatches and the whole test set.
Training is minibatch SGD with momentum and a cosine learning-rate decay, seeded, so a
run is reproducible.

    pip install -e '.[examples]'          # scikit-learn: the digits ship with it
    python examples/cnn_digits.py         # test accuracy 0.98-0.99; ~25 s on two cores, most of it compiling
    python examples/cnn_digits.py --epochs 3 --backend numpy
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import symdiff as sd

CLASSES, SIDE = 10, 8
CHANNELS = (16, 32)


def max_pool(x):
    """2x2 max pooling of (batch, channels, h, w) with even h and w: a reshape and a max."""
    _, c, h, w = x.type.shape
    return sd.max(sd.reshape(x, (-1, c, h // 2, 2, w // 2, 2)), axis=(3, 5))


def build_step(backend: str):
    """One compiled function: (weights..., X, Y) -> (loss, logits, gradients...)."""
    c1, c2 = CHANNELS
    K1, b1 = sd.tensor("K1", (c1, 1, 3, 3)), sd.vector("b1", c1)
    K2, b2 = sd.tensor("K2", (c2, c1, 3, 3)), sd.vector("b2", c2)
    W, b = sd.matrix("W", (c2 * (SIDE // 4) ** 2, CLASSES)), sd.vector("b", CLASSES)
    X = sd.tensor("X", (None, 1, SIDE, SIDE))  # images, NCHW
    Y = sd.matrix("Y", (None, CLASSES))  # one-hot labels

    h = max_pool(sd.relu(sd.conv2d(X, K1, padding="same") + b1[:, None, None]))
    h = max_pool(sd.relu(sd.conv2d(h, K2, padding="same") + b2[:, None, None]))
    logits = sd.reshape(h, (-1, W.type.shape[0])) @ W + b
    loss = sd.mean(-sd.sum(Y * sd.log_softmax(logits, axis=1), axis=1))
    params = [K1, b1, K2, b2, W, b]
    return sd.function(params + [X, Y], [loss, logits, *sd.grad(loss, params)], backend=backend)


def init_params(rng) -> list:
    """He-normal filters and dense weights, zero biases."""
    c1, c2 = CHANNELS
    features = c2 * (SIDE // 4) ** 2
    return [
        rng.normal(0, np.sqrt(2 / 9), (c1, 1, 3, 3)), np.zeros(c1),
        rng.normal(0, np.sqrt(2 / (9 * c1)), (c2, c1, 3, 3)), np.zeros(c2),
        rng.normal(0, np.sqrt(1 / features), (features, CLASSES)), np.zeros(CLASSES),
    ]


def load_data(seed: int):
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError:  # the example's extra: name it instead of a bare ModuleNotFoundError
        raise SystemExit("cnn_digits.py trains on scikit-learn's digits: install the examples extra, "
                         "pip install 'symdiff[examples]' (or pip install scikit-learn)") from None

    digits = load_digits()  # 1797 images of 8x8 pixels, values 0..16
    images = (digits.images / 16.0)[:, None, :, :]  # NCHW, one channel
    one_hot = np.eye(CLASSES)[digits.target]
    return train_test_split(images, one_hot, test_size=0.25, random_state=seed, stratify=digits.target)


def accuracy(logits, one_hot) -> float:
    return float(np.mean(np.argmax(logits, axis=1) == np.argmax(one_hot, axis=1)))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description="Train a small CNN on the digits through one sd.function.")
    parser.add_argument("--backend", default="numba", choices=("numba", "numpy"))
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    started = time.perf_counter()
    X_train, X_test, Y_train, Y_test = load_data(args.seed)
    step = build_step(args.backend)
    rng = np.random.default_rng(args.seed)
    params = init_params(rng)
    step(*params, X_train[:2], Y_train[:2])  # the first call compiles (or loads the cached kernel)
    print(f"data loaded, value+gradient function built and first call done ({args.backend} backend): "
          f"{time.perf_counter() - started:.2f} s")

    velocity = [np.zeros_like(p) for p in params]
    train_accuracy = test_accuracy = 0.0
    for epoch in range(1, args.epochs + 1):
        lr = args.lr * 0.5 * (1 + np.cos(np.pi * (epoch - 1) / args.epochs))  # cosine decay: settles at the end
        order = rng.permutation(len(X_train))
        total_loss, correct = 0.0, 0
        for start in range(0, len(order), args.batch_size):
            batch = order[start:start + args.batch_size]
            loss, logits, *grads = step(*params, X_train[batch], Y_train[batch])
            for p, v, g in zip(params, velocity, grads):  # SGD with momentum, in place
                v *= args.momentum
                v -= lr * g
                p += v
            total_loss += float(loss) * len(batch)
            correct += int(np.sum(np.argmax(logits, axis=1) == np.argmax(Y_train[batch], axis=1)))
        train_accuracy = correct / len(X_train)
        test_loss, test_logits, *_ = step(*params, X_test, Y_test)
        test_accuracy = accuracy(test_logits, Y_test)
        print(f"epoch {epoch:3d}  train loss {total_loss / len(X_train):.4f}  train accuracy {train_accuracy:.4f}  "
              f"test loss {float(test_loss):.4f}  test accuracy {test_accuracy:.4f}  "
              f"({time.perf_counter() - started:.1f} s)")

    seconds = time.perf_counter() - started
    print(f"total time {seconds:.1f} s (data, graph, compilation and training)")
    print(f"final train accuracy {train_accuracy:.4f}")
    print(f"final test accuracy {test_accuracy:.4f}")
    return {"accuracy": test_accuracy, "train_accuracy": train_accuracy, "seconds": seconds}


if __name__ == "__main__":
    main()
