"""Train a 64-128-10 tanh MLP on scikit-learn's handwritten digits with symdiff.

The model, its mean cross-entropy loss and the loss's gradient for every weight
are one graph, compiled once by ``sd.function`` into a single callable; each
minibatch step is one call to it followed by an Adam (or plain SGD) update in
NumPy.  The batch dimension is ``None``, so the same compiled function serves the
minibatches, the smaller last minibatch and the whole test set.

    pip install -e '.[examples]'          # scikit-learn: the digits ship with it
    python examples/train_mlp.py          # Numba backend, about 20 epochs
    python examples/train_mlp.py --backend numpy --optimizer sgd --lr 0.1
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import symdiff as sd

HIDDEN, CLASSES = 128, 10


def build_step(features: int, backend: str):
    """One compiled function: (W1, b1, W2, b2, X, Y) -> (loss, logits, dW1, db1, dW2, db2)."""
    W1, W2 = sd.matrix("W1", (features, HIDDEN)), sd.matrix("W2", (HIDDEN, CLASSES))
    b1, b2 = sd.vector("b1", HIDDEN), sd.vector("b2", CLASSES)
    X, Y = sd.matrix("X", (None, features)), sd.matrix("Y", (None, CLASSES))  # Y: one-hot labels

    logits = sd.tanh(X @ W1 + b1) @ W2 + b2
    loss = sd.mean(-sd.sum(Y * sd.log_softmax(logits, axis=1), axis=1))
    params = [W1, b1, W2, b2]
    # The logits come out too, so the test accuracy needs no second function.
    return sd.function(params + [X, Y], [loss, logits, *sd.grad(loss, params)], backend=backend)


def load_data(seed: int):
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError:  # the example's extra: name it instead of a bare ModuleNotFoundError
        raise SystemExit("train_mlp.py trains on scikit-learn's digits: install the examples extra, "
                         "pip install 'symdiff[examples]' (or pip install scikit-learn)") from None

    digits = load_digits()  # 1797 8x8 images, bundled with scikit-learn
    images = digits.data / 16.0  # pixel values 0..16 -> 0..1
    one_hot = np.eye(CLASSES)[digits.target]
    return train_test_split(images, one_hot, test_size=0.25, random_state=seed, stratify=digits.target)


def init_params(features: int, rng) -> list:
    """Glorot-uniform weights, zero biases."""
    def glorot(fan_in, fan_out):
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-limit, limit, (fan_in, fan_out))
    return [glorot(features, HIDDEN), np.zeros(HIDDEN), glorot(HIDDEN, CLASSES), np.zeros(CLASSES)]


class Adam:
    def __init__(self, params, lr, beta1=0.9, beta2=0.999, eps=1e-8):
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.t = 0

    def update(self, params, grads):
        self.t += 1
        correction1, correction2 = 1 - self.beta1 ** self.t, 1 - self.beta2 ** self.t
        for p, g, m, v in zip(params, grads, self.m, self.v):
            m *= self.beta1
            m += (1 - self.beta1) * g
            v *= self.beta2
            v += (1 - self.beta2) * g * g
            p -= self.lr * (m / correction1) / (np.sqrt(v / correction2) + self.eps)


class SGD:
    def __init__(self, params, lr):
        self.lr = lr

    def update(self, params, grads):
        for p, g in zip(params, grads):
            p -= self.lr * g


def accuracy(logits, one_hot) -> float:
    return float(np.mean(np.argmax(logits, axis=1) == np.argmax(one_hot, axis=1)))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description="Train a tanh MLP on the digits through one sd.function.")
    parser.add_argument("--backend", default="numba", choices=("numba", "numpy"))
    parser.add_argument("--optimizer", default="adam", choices=("adam", "sgd"))
    parser.add_argument("--lr", type=float, default=None, help="learning rate (default 0.003 Adam, 0.1 SGD)")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    started = time.perf_counter()
    X_train, X_test, Y_train, Y_test = load_data(args.seed)
    features = X_train.shape[1]
    step = build_step(features, args.backend)
    rng = np.random.default_rng(args.seed)
    params = init_params(features, rng)
    step(*params, X_train[:2], Y_train[:2])  # the first call compiles (or loads the cached kernel)
    print(f"data loaded, value+gradient function built and first call done ({args.backend} backend): "
          f"{time.perf_counter() - started:.2f} s")

    lr = args.lr if args.lr is not None else (0.003 if args.optimizer == "adam" else 0.1)
    optimizer = Adam(params, lr) if args.optimizer == "adam" else SGD(params, lr)
    for epoch in range(1, args.epochs + 1):
        epoch_started = time.perf_counter()
        order = rng.permutation(len(X_train))
        total_loss = 0.0
        for start in range(0, len(order), args.batch_size):
            batch = order[start:start + args.batch_size]
            loss, _, *grads = step(*params, X_train[batch], Y_train[batch])
            optimizer.update(params, grads)
            total_loss += float(loss) * len(batch)
        test_loss, test_logits, *_ = step(*params, X_test, Y_test)
        test_accuracy = accuracy(test_logits, Y_test)
        now = time.perf_counter()
        print(f"epoch {epoch:3d}  train loss {total_loss / len(X_train):.4f}  test loss {float(test_loss):.4f}  "
              f"test accuracy {test_accuracy:.4f}  epoch {now - epoch_started:.2f} s  (total {now - started:.1f} s)")

    seconds = time.perf_counter() - started
    print(f"total time {seconds:.1f} s (data, graph, compilation and training)")
    print(f"final test accuracy {test_accuracy:.4f}")
    return {"accuracy": test_accuracy, "seconds": seconds}


if __name__ == "__main__":
    main()
