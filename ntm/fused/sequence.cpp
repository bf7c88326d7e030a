// A whole NTM sequence, forward and backward, in one call each (README "Training throughput").
//
// The same step as ntm/model.py's NTMCell, for an LSTM (one layer) or MLP (one layer)
// controller, any number of read heads and one write head: the controller sees the input and
// the previous reads; every head addresses the previous memory (eq. 5-9); the read heads read
// it (eq. 2); the write head erases and adds (eq. 3-4). What is not recurrent stays in PyTorch
// (ntm/fused/__init__.py): the input's share of the controller's pre-activations for every
// step in one matrix product, the output layer, and every parameter gradient (one product
// over all steps from what the backward pass here stores). So this file holds only the time
// loop, which in Python costs a graph call or dozens of small ops a step.
//
// Layout (row-major, contiguous): t time, b batch, g controller pre-activations (4d for the
// LSTM in PyTorch's i, f, g, o order; d for the MLP), d controller width, q all reads (r * w),
// p the heads' raw parameters, h heads (reads first, the write head last), n slots, w width.
// The memory is word-major here, (w, n) per sample, the transpose of the model's (n, w): every
// memory loop then runs along the slots, vectorised, instead of along short words.
// Built by ntm/fused/__init__.py with the system's C++ compiler; no PyTorch headers.

// glibc declares vector versions of exp, log and tanh (libmvec) only under __FAST_MATH__; this
// asks for the declarations alone (the code is still compiled without -ffast-math), so that the
// loops marked `omp simd` below call 16 exponentials at once instead of one (measured: a fifth
// of a training step at batch 32). Elsewhere the macro changes nothing.
#if defined(__x86_64__) && defined(__linux__)
#define __FAST_MATH__ 1
#include <math.h>
#undef __FAST_MATH__
#endif

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

namespace {

// As in ntm/addressing.py.
constexpr double NORM_EPS = 1e-8;
constexpr double SHARPEN_FLOOR = 1e-30;
// torch.nn.functional.softplus's default threshold: above it softplus(x) = x.
constexpr double SOFTPLUS_THRESHOLD = 20.0;

enum Kind : int64_t { LSTM = 0, MLP = 1 };

template <typename T> inline T sigmoid(T x) { return T(1) / (T(1) + std::exp(-x)); }

template <typename T> inline T softplus(T x) {
  return x > T(SOFTPLUS_THRESHOLD) ? x : std::log1p(std::exp(x));
}

template <typename T> inline T softplus_grad(T x) {
  return x > T(SOFTPLUS_THRESHOLD) ? T(1) : sigmoid(x);
}

// out[0:m] = softmax(in[0:m]); in and out may alias.
template <typename T> void softmax(const T *in, T *out, int64_t m) {
  T top = in[0];
  for (int64_t i = 1; i < m; ++i) top = std::max(top, in[i]);
  T total = 0;
#pragma omp simd reduction(+ : total)
  for (int64_t i = 0; i < m; ++i) {
    out[i] = std::exp(in[i] - top);
    total += out[i];
  }
  for (int64_t i = 0; i < m; ++i) out[i] /= total;
}

// d(in) from d(out) for out = softmax(in), written over d_out: y (dy - <y, dy>).
template <typename T> void softmax_backward(const T *out, T *grad, int64_t m) {
  T dot = 0;
  for (int64_t i = 0; i < m; ++i) dot += out[i] * grad[i];
  for (int64_t i = 0; i < m; ++i) grad[i] = out[i] * (grad[i] - dot);
}

// y[0:m] += a * x[0:m]
template <typename T> inline void axpy(T a, const T *x, T *y, int64_t m) {
#pragma omp simd
  for (int64_t i = 0; i < m; ++i) y[i] += a * x[i];
}

template <typename T> inline T dot(const T *x, const T *y, int64_t m) {
  T total = 0;
#pragma omp simd reduction(+ : total)
  for (int64_t i = 0; i < m; ++i) total += x[i] * y[i];
  return total;
}

// acc[r][0:width] += sum_k x[r, k] matrix[k, 0:width] for ROWS rows of x (inner wide) and a
// matrix whose rows are `cols` apart. With a compile-time `width` (std::integral_constant) the
// loops have constant bounds and the accumulators stay in registers.
template <int64_t ROWS, int64_t BLOCK, typename T, typename Width>
void accumulate(T (&acc)[ROWS][BLOCK], const T *x, const T *matrix, int64_t inner, int64_t cols,
                Width width) {
  for (int64_t k = 0; k < inner; ++k) {
    const T *row = matrix + k * cols;
#pragma GCC unroll 4
    for (int64_t r = 0; r < ROWS; ++r) {
      const T a = x[r * inner + k];
#pragma omp simd
      for (int64_t c = 0; c < width; ++c) acc[r][c] += a * row[c];
    }
  }
}

// y (rows, cols) += x (rows, inner) @ matrix (inner, cols), all row-major, for ROWS rows: a
// block of ROWS x BLOCK outputs is accumulated in registers over the inner axis, so each row of
// the matrix is loaded once per ROWS rows of x (samples of the batch), not once per row.
template <int64_t ROWS, typename T>
void matmat_rows(const T *x, const T *matrix, T *y, int64_t inner, int64_t cols) {
  constexpr int64_t BLOCK = 256 / sizeof(T);  // four 512-bit registers a row
  for (int64_t c0 = 0; c0 < cols; c0 += BLOCK) {
    T acc[ROWS][BLOCK] = {};
    const int64_t width = std::min(BLOCK, cols - c0);
    if (width == BLOCK)
      accumulate(acc, x, matrix + c0, inner, cols, std::integral_constant<int64_t, BLOCK>{});
    else
      accumulate(acc, x, matrix + c0, inner, cols, width);
    for (int64_t r = 0; r < ROWS; ++r) axpy(T(1), acc[r], y + r * cols + c0, width);
  }
}

// The Fortran BLAS matrix product (column-major), sgemm_ or dgemm_, as PyTorch's own matrix
// library exports it (ntm/fused/__init__.py finds it and checks it on a small product). Its
// sizes are given as zero-extended 64-bit integers: a BLAS with 32-bit ones reads their low
// half (on little-endian machines; elsewhere the check fails), one with 64-bit ones the whole.
using Gemm = void (*)(const char *, const char *, const int *, const int *, const int *,
                      const void *, const void *, const int *, const void *, const int *,
                      const void *, void *, const int *);

// y (rows, cols) += x (rows, inner) @ matrix (inner, cols), all row-major: by `gemm` if given
// (row-major y is column-major y^T = matrix^T x^T), else four rows at a time here.
template <typename T>
void matmat(Gemm gemm, const T *x, const T *matrix, T *y, int64_t rows, int64_t inner,
            int64_t cols) {
  if (gemm) {
    const int64_t sizes[3] = {cols, rows, inner};  // m, n, k; < 2^31 (checked in Python)
    const int *m = reinterpret_cast<const int *>(sizes), *n = m + 2, *k = m + 4;
    const T one = 1;
    gemm("N", "N", m, n, k, &one, matrix, m, x, k, &one, y, m);
    return;
  }
  int64_t r = 0;
  for (; r + 4 <= rows; r += 4) matmat_rows<4>(x + r * inner, matrix, y + r * cols, inner, cols);
  if (rows - r == 3) matmat_rows<3>(x + r * inner, matrix, y + r * cols, inner, cols);
  if (rows - r == 2) matmat_rows<2>(x + r * inner, matrix, y + r * cols, inner, cols);
  if (rows - r == 1) matmat_rows<1>(x + r * inner, matrix, y + r * cols, inner, cols);
}

// norms[i] = |memory[:, i]| for a word-major memory (w, n).
template <typename T> void slot_norms(const T *memory, T *norms, int64_t n, int64_t w) {
  std::fill(norms, norms + n, T(0));
  for (int64_t j = 0; j < w; ++j) {
    const T *row = memory + j * n;
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) norms[i] += row[i] * row[i];
  }
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) norms[i] = std::sqrt(norms[i]);
}

// y[i] += a * x[(i - shift) mod n] for i in 0..n-1, any shift: two contiguous pieces.
template <typename T> void rolled_axpy(T a, const T *x, T *y, int64_t n, int64_t shift) {
  shift = ((shift % n) + n) % n;
  axpy(a, x + n - shift, y, shift);
  axpy(a, x, y + shift, n - shift);
}

// sum_i y[i] * x[(i - shift) mod n]
template <typename T> T rolled_dot(const T *x, const T *y, int64_t n, int64_t shift) {
  shift = ((shift % n) + n) % n;
  return dot(x + n - shift, y, shift) + dot(x, y + shift, n - shift);
}

}  // namespace

// Sizes and pointers of one call, mirrored by a ctypes.Structure in ntm/fused/__init__.py.
// Inputs are read-only; "saved" tensors are written by the forward pass and read by the
// backward pass; grads are written by the backward pass.
struct Sequence {
  int64_t kind, steps, batch, width, reads_width, slots, word, read_heads, shifts, params;
  // inputs
  const void *input_gates;  // (t, b, g): the input's share, biases included
  const void *reads_weight, *reads_weight_t;  // (g, q) and (q, g)
  const void *hidden_weight, *hidden_weight_t;  // (g, d) and (d, g); LSTM only
  const void *heads_weight, *heads_weight_t, *heads_bias;  // (p, d), (d, p), (p)
  const void *memory0, *weights0, *reads0, *hidden0, *cell0;  // (b,w,n) (b,h,n) (b,q) (b,d) (b,d)
  // saved by forward
  void *hidden, *cell, *gates;  // (t, b, d), (t, b, d) LSTM only, (t, b, g) after activation
  void *raw;  // (t, b, p): head parameters before their activations
  void *reads;  // (t, b, q)
  void *memory;  // (t + 1, b, w, n): memory[0] = memory0, memory[t + 1] after step t
  void *similarity, *content, *gated, *shifted, *weights;  // (t, b, h, n) each, eq. 6, 5, 7, 8, 9
  // backward: gradients in (of the outputs hidden and reads, and of the final state) ...
  const void *grad_hidden, *grad_reads;  // (t, b, d), (t, b, q)
  const void *grad_memory_final, *grad_weights_final, *grad_cell_final;  // (b,w,n) (b,h,n) (b,d)
  // ... and out
  void *grad_gates, *grad_raw;  // (t, b, g), (t, b, p)
  void *grad_memory0, *grad_weights0, *grad_reads0, *grad_hidden0, *grad_cell0;
  // the controller's and heads' products: a BLAS gemm of the tensors' type, or null (here)
  const void *gemm;
};

namespace {

template <typename T> struct View {
  const Sequence &s;
  int64_t heads, gates, head_params;
  explicit View(const Sequence &seq)
      : s(seq), heads(seq.read_heads + 1), gates(seq.kind == LSTM ? 4 * seq.width : seq.width),
        head_params(seq.word + 3 + seq.shifts) {}
  template <typename P> static T *at(P *base, int64_t offset) {
    return const_cast<T *>(static_cast<const T *>(base)) + offset;
  }
  int64_t tb(int64_t t, int64_t b) const { return t * s.batch + b; }
  T *memory(int64_t t, int64_t b) const { return at(s.memory, tb(t, b) * s.slots * s.word); }
  T *addressing(void *base, int64_t t, int64_t b) const {
    return at(base, tb(t, b) * heads * s.slots);
  }
};

template <typename T> void forward(const Sequence &s) {
  const View<T> v(s);
  const int64_t n = s.slots, w = s.word, d = s.width, q = s.reads_width, g = v.gates;
  const int64_t k = s.shifts / 2, batch = s.batch;
  const T *reads_weight_t = static_cast<const T *>(s.reads_weight_t);
  const T *hidden_weight_t = static_cast<const T *>(s.hidden_weight_t);
  const T *heads_weight_t = static_cast<const T *>(s.heads_weight_t);
  const T *heads_bias = static_cast<const T *>(s.heads_bias);
  const Gemm gemm = reinterpret_cast<Gemm>(const_cast<void *>(s.gemm));
  std::vector<T> norms(n), shift(s.shifts), erase(w);
  std::memcpy(s.memory, s.memory0, sizeof(T) * batch * n * w);

  for (int64_t t = 0; t < s.steps; ++t) {
    // Controller, the whole batch at once: pre-activations = the input's share
    // + reads @ W_r^T (+ hidden @ W_hh^T).
    const T *prev_reads = t ? v.at(s.reads, v.tb(t - 1, 0) * q) : v.at(s.reads0, 0);
    const T *prev_hidden = t ? v.at(s.hidden, v.tb(t - 1, 0) * d) : v.at(s.hidden0, 0);
    T *gates = v.at(s.gates, v.tb(t, 0) * g);  // (b, g)
    T *hidden = v.at(s.hidden, v.tb(t, 0) * d);  // (b, d)
    std::memcpy(gates, v.at(s.input_gates, v.tb(t, 0) * g), sizeof(T) * batch * g);
    matmat(gemm, prev_reads, reads_weight_t, gates, batch, q, g);
    if (s.kind == LSTM) {
      const T *prev_cell = t ? v.at(s.cell, v.tb(t - 1, 0) * d) : v.at(s.cell0, 0);
      T *cell = v.at(s.cell, v.tb(t, 0) * d);
      matmat(gemm, prev_hidden, hidden_weight_t, gates, batch, d, g);
      for (int64_t b = 0; b < batch; ++b) {
        T *gb = gates + b * g;
#pragma omp simd
        for (int64_t j = 0; j < d; ++j) {
          const T in = sigmoid(gb[j]), forget = sigmoid(gb[d + j]);
          const T candidate = std::tanh(gb[2 * d + j]), out = sigmoid(gb[3 * d + j]);
          gb[j] = in, gb[d + j] = forget, gb[2 * d + j] = candidate, gb[3 * d + j] = out;
          cell[b * d + j] = forget * prev_cell[b * d + j] + in * candidate;
          hidden[b * d + j] = out * std::tanh(cell[b * d + j]);
        }
      }
    } else {
      for (int64_t j = 0; j < batch * d; ++j) hidden[j] = gates[j] = std::max(gates[j], T(0));
    }

    // Heads, the whole batch: raw parameters = heads_bias + hidden @ W_p^T.
    T *raw_t = v.at(s.raw, v.tb(t, 0) * s.params);
    for (int64_t b = 0; b < batch; ++b)
      std::memcpy(raw_t + b * s.params, heads_bias, sizeof(T) * s.params);
    matmat(gemm, hidden, heads_weight_t, raw_t, batch, d, s.params);

    for (int64_t b = 0; b < batch; ++b) {
      const T *raw = raw_t + b * s.params;
      const T *prev_weights =
          t ? v.addressing(s.weights, t - 1, b) : v.at(s.weights0, b * v.heads * n);
      // Addressing, every head on the previous memory.
      const T *memory = v.memory(t, b);
      slot_norms(memory, norms.data(), n, w);
      for (int64_t h = 0; h < v.heads; ++h) {
        const T *p = raw + h * v.head_params;
        const T *key = p;
        const T strength = softplus(p[w]), gate = sigmoid(p[w + 1]);
        const T gamma = 1 + softplus(p[w + 2 + s.shifts]);
        softmax(p + w + 2, shift.data(), s.shifts);  // over offsets -k..k
        T *similarity = v.addressing(s.similarity, t, b) + h * n;
        T *content = v.addressing(s.content, t, b) + h * n;
        T *gated = v.addressing(s.gated, t, b) + h * n;
        T *shifted = v.addressing(s.shifted, t, b) + h * n;
        T *weights = v.addressing(s.weights, t, b) + h * n;
        const T key_norm = std::sqrt(dot(key, key, w));
        std::fill(similarity, similarity + n, T(0));  // eq. 6
        for (int64_t j = 0; j < w; ++j) axpy(key[j], memory + j * n, similarity, n);
#pragma omp simd
        for (int64_t i = 0; i < n; ++i) {
          similarity[i] /= std::max(key_norm * norms[i], T(NORM_EPS));
          content[i] = strength * similarity[i];
        }
        softmax(content, content, n);  // eq. 5
        const T *previous = prev_weights + h * n;
#pragma omp simd
        for (int64_t i = 0; i < n; ++i) gated[i] = gate * content[i] + (1 - gate) * previous[i];
        std::fill(shifted, shifted + n, T(0));  // eq. 8: offset o - k moves slot i - (o - k) to i
        for (int64_t o = 0; o < s.shifts; ++o) rolled_axpy(shift[o], gated, shifted, n, o - k);
#pragma omp simd
        for (int64_t i = 0; i < n; ++i)  // eq. 9, as a softmax of gamma * log
          weights[i] = gamma * std::log(std::max(shifted[i], T(SHARPEN_FLOOR)));
        softmax(weights, weights, n);
      }

      // Read (eq. 2), then erase and add (eq. 3-4) with the write head.
      const T *weights = v.addressing(s.weights, t, b);
      T *reads = v.at(s.reads, v.tb(t, b) * q);
      for (int64_t h = 0; h < s.read_heads; ++h)
        for (int64_t j = 0; j < w; ++j) reads[h * w + j] = dot(weights + h * n, memory + j * n, n);
      const T *write = weights + s.read_heads * n;
      const T *erase_raw = raw + v.heads * v.head_params, *add = erase_raw + w;
      for (int64_t j = 0; j < w; ++j) erase[j] = sigmoid(erase_raw[j]);
      T *next = v.memory(t + 1, b);
      for (int64_t j = 0; j < w; ++j) {
        const T *row = memory + j * n;
        T *next_row = next + j * n;
#pragma omp simd
        for (int64_t i = 0; i < n; ++i)
          next_row[i] = row[i] * (1 - write[i] * erase[j]) + write[i] * add[j];
      }
    }
  }
}

template <typename T> void backward(const Sequence &s) {
  const View<T> v(s);
  const int64_t n = s.slots, w = s.word, d = s.width, q = s.reads_width, g = v.gates;
  const int64_t k = s.shifts / 2, heads = v.heads, batch = s.batch;
  const T *reads_weight = static_cast<const T *>(s.reads_weight);
  const T *hidden_weight = static_cast<const T *>(s.hidden_weight);
  const T *heads_weight = static_cast<const T *>(s.heads_weight);
  const Gemm gemm = reinterpret_cast<Gemm>(const_cast<void *>(s.gemm));
  // What flows back into step t from step t + 1, for the whole batch: the gradients of its
  // outputs (hidden, cell, reads, memory, weights), and what step t passes on to step t - 1.
  std::vector<T> grad_hidden(batch * d), grad_cell(batch * d), grad_reads(batch * q),
      grad_memory(batch * n * w), grad_weights(batch * heads * n);
  std::vector<T> grad_prev_hidden(batch * d), grad_prev_cell(batch * d),
      grad_prev_reads(batch * q), grad_prev_memory(batch * n * w),
      grad_prev_weights(batch * heads * n);
  // Scratch of one sample.
  std::vector<T> grad_step_weights(heads * n), norms(n), dot_scale(n), memory_scale(n),
      grad_gated(n), shift(s.shifts), grad_shift(s.shifts), erase(w), grad_erase(w), grad_add(w);
  std::memcpy(grad_memory.data(), s.grad_memory_final, sizeof(T) * batch * n * w);
  std::memcpy(grad_weights.data(), s.grad_weights_final, sizeof(T) * batch * heads * n);
  if (s.kind == LSTM) std::memcpy(grad_cell.data(), s.grad_cell_final, sizeof(T) * batch * d);

  for (int64_t t = s.steps - 1; t >= 0; --t) {
    axpy(T(1), v.at(s.grad_hidden, v.tb(t, 0) * d), grad_hidden.data(), batch * d);
    axpy(T(1), v.at(s.grad_reads, v.tb(t, 0) * q), grad_reads.data(), batch * q);

    // Memory and addressing, one sample at a time: back to the heads' raw parameters.
    for (int64_t b = 0; b < batch; ++b) {
      const T *memory = v.memory(t, b);  // the memory this step addressed, read and wrote
      const T *raw = v.at(s.raw, v.tb(t, b) * s.params);
      const T *weights = v.addressing(s.weights, t, b);
      const T *prev_weights =
          t ? v.addressing(s.weights, t - 1, b) : v.at(s.weights0, b * heads * n);
      const T *grad_memory_b = grad_memory.data() + b * n * w;
      const T *grad_reads_b = grad_reads.data() + b * q;
      T *grad_prev_memory_b = grad_prev_memory.data() + b * n * w;
      T *grad_prev_weights_b = grad_prev_weights.data() + b * heads * n;
      T *grad_raw = v.at(s.grad_raw, v.tb(t, b) * s.params);
      std::fill(grad_raw, grad_raw + s.params, T(0));
      std::memcpy(grad_step_weights.data(), grad_weights.data() + b * heads * n,
                  sizeof(T) * heads * n);

        // Erase and add: next = memory * (1 - write e^T) + write a^T.
        const T *write = weights + s.read_heads * n;
        const T *erase_raw = raw + heads * v.head_params, *add = erase_raw + w;
        T *grad_write = grad_step_weights.data() + s.read_heads * n;
        for (int64_t j = 0; j < w; ++j) erase[j] = sigmoid(erase_raw[j]);
        for (int64_t j = 0; j < w; ++j) {
          const T *m = memory + j * n, *gm = grad_memory_b + j * n;
          T *gpm = grad_prev_memory_b + j * n;
          T erased = 0, added = 0;
#pragma omp simd reduction(+ : erased, added)
          for (int64_t i = 0; i < n; ++i) {
            grad_write[i] += gm[i] * (add[j] - m[i] * erase[j]);
            erased += gm[i] * m[i] * write[i];
            added += gm[i] * write[i];
            gpm[i] = gm[i] * (1 - write[i] * erase[j]);
          }
          grad_erase[j] = -erased;
          grad_add[j] = added;
        }
        T *grad_erase_raw = grad_raw + heads * v.head_params;
        for (int64_t j = 0; j < w; ++j) {
          grad_erase_raw[j] = grad_erase[j] * erase[j] * (1 - erase[j]);
          grad_erase_raw[w + j] = grad_add[j];
        }

        // Read: reads[h] = sum_i weights[h, i] memory[i].
        for (int64_t h = 0; h < s.read_heads; ++h) {
          const T *gr = grad_reads_b + h * w;
          for (int64_t j = 0; j < w; ++j) {
            axpy(gr[j], memory + j * n, grad_step_weights.data() + h * n, n);
            axpy(gr[j], weights + h * n, grad_prev_memory_b + j * n, n);
          }
        }

        // Addressing, each head back from its weights to its raw parameters and the memory.
        slot_norms(memory, norms.data(), n, w);
        for (int64_t h = 0; h < heads; ++h) {
          const T *p = raw + h * v.head_params;
          T *gp = grad_raw + h * v.head_params;
          const T *key = p;
          const T strength = softplus(p[w]), gate = sigmoid(p[w + 1]);
          const T gamma = 1 + softplus(p[w + 2 + s.shifts]);
          softmax(p + w + 2, shift.data(), s.shifts);
          const T *similarity = v.addressing(s.similarity, t, b) + h * n;
          const T *content = v.addressing(s.content, t, b) + h * n;
          const T *gated = v.addressing(s.gated, t, b) + h * n;
          const T *shifted = v.addressing(s.shifted, t, b) + h * n;
          const T *final = weights + h * n, *previous = prev_weights + h * n;
          T *grad = grad_step_weights.data() + h * n;  // reused: d final -> d shifted -> ...

          // eq. 9: final = softmax(gamma * log(max(shifted, floor))).
          softmax_backward(final, grad, n);  // now d(gamma * log)
          T grad_gamma = 0;
#pragma omp simd reduction(+ : grad_gamma)
          for (int64_t i = 0; i < n; ++i) {
            const bool floored = shifted[i] < T(SHARPEN_FLOOR);
            grad_gamma += grad[i] * std::log(floored ? T(SHARPEN_FLOOR) : shifted[i]);
            grad[i] = floored ? T(0) : gamma * grad[i] / shifted[i];  // now d shifted
          }
          // eq. 8: shifted[i] = sum_o gated[i - (o - k)] shift[o].
          T *gg = grad_gated.data();
          std::fill(gg, gg + n, T(0));
          for (int64_t o = 0; o < s.shifts; ++o) {
            grad_shift[o] = rolled_dot(gated, grad, n, o - k);
            rolled_axpy(shift[o], grad, gg, n, -(o - k));
          }
          softmax_backward(shift.data(), grad_shift.data(), s.shifts);
          for (int64_t o = 0; o < s.shifts; ++o) gp[w + 2 + o] = grad_shift[o];
          // eq. 7: gated = gate * content + (1 - gate) * previous.
          T grad_gate = 0;
          T *grad_previous = grad_prev_weights_b + h * n;
          for (int64_t i = 0; i < n; ++i) {
            grad_gate += gg[i] * (content[i] - previous[i]);
            grad_previous[i] = (1 - gate) * gg[i];
            grad[i] = gate * gg[i];  // now d content
          }
          // eq. 5: content = softmax(strength * similarity).
          softmax_backward(content, grad, n);  // now d(strength * similarity)
          T grad_strength = 0;
          for (int64_t i = 0; i < n; ++i) {
            grad_strength += grad[i] * similarity[i];
            grad[i] *= strength;  // now d similarity
          }
          // eq. 6: similarity[i] = key . memory[i] / max(|key| |memory[i]|, eps).
          const T key_norm = std::sqrt(dot(key, key, w));
          // Per slot: d similarity / d (key . memory[:, i]) = scale[i]; above the floor also
          // the norms' terms, -similarity / |key|^2 and -similarity / |memory[:, i]|^2.
          T key_total = 0;
#pragma omp simd reduction(+ : key_total)
          for (int64_t i = 0; i < n; ++i) {
            const T norm = key_norm * norms[i];
            const bool floored = norm < T(NORM_EPS);
            const T of_norms = floored ? T(0) : grad[i] * similarity[i];
            key_total += of_norms;
            dot_scale[i] = grad[i] / (floored ? T(NORM_EPS) : norm);
            // divided twice, not by the square: |memory[:, i]|^2 underflows before the norm does
            memory_scale[i] = floored ? T(0) : of_norms / norms[i] / norms[i];
          }
          // (key_norm 0: every slot floored, no norm terms; divided twice, not by the square)
          const T key_scale = key_norm > 0 ? key_total / key_norm : T(0);
          T *grad_key = gp;
          for (int64_t j = 0; j < w; ++j) {
            const T *m = memory + j * n;
            T *gm = grad_prev_memory_b + j * n;
            const T unit_key = key_norm > 0 ? key[j] / key_norm : T(0);
            grad_key[j] = dot(dot_scale.data(), m, n) - key_scale * unit_key;
#pragma omp simd
            for (int64_t i = 0; i < n; ++i) gm[i] += dot_scale[i] * key[j] - memory_scale[i] * m[i];
          }
          gp[w] = grad_strength * softplus_grad(p[w]);
          gp[w + 1] = grad_gate * gate * (1 - gate);
          gp[w + 2 + s.shifts] = grad_gamma * softplus_grad(p[w + 2 + s.shifts]);
        }

    }

    // Heads, the whole batch: raw = bias + hidden @ W_p^T.
    matmat(gemm, v.at(s.grad_raw, v.tb(t, 0) * s.params), heads_weight, grad_hidden.data(),
           batch, s.params, d);

    // Controller, the whole batch.
    T *grad_gates = v.at(s.grad_gates, v.tb(t, 0) * g);  // (b, g)
    const T *gates = v.at(s.gates, v.tb(t, 0) * g);
    if (s.kind == LSTM) {
      const T *cell = v.at(s.cell, v.tb(t, 0) * d);
      const T *prev_cell = t ? v.at(s.cell, v.tb(t - 1, 0) * d) : v.at(s.cell0, 0);
      for (int64_t b = 0; b < batch; ++b) {
        const T *gb = gates + b * g;
        T *ggb = grad_gates + b * g;
        const int64_t o = b * d;
#pragma omp simd
        for (int64_t j = 0; j < d; ++j) {
          const T in = gb[j], forget = gb[d + j], candidate = gb[2 * d + j];
          const T out = gb[3 * d + j], squashed = std::tanh(cell[o + j]);
          const T dc = grad_cell[o + j] + grad_hidden[o + j] * out * (1 - squashed * squashed);
          ggb[j] = dc * candidate * in * (1 - in);
          ggb[d + j] = dc * prev_cell[o + j] * forget * (1 - forget);
          ggb[2 * d + j] = dc * in * (1 - candidate * candidate);
          ggb[3 * d + j] = grad_hidden[o + j] * squashed * out * (1 - out);
          grad_prev_cell[o + j] = dc * forget;
        }
      }
      std::fill(grad_prev_hidden.begin(), grad_prev_hidden.end(), T(0));
      matmat(gemm, grad_gates, hidden_weight, grad_prev_hidden.data(), batch, g, d);
    } else {
      for (int64_t j = 0; j < batch * d; ++j) grad_gates[j] = gates[j] > 0 ? grad_hidden[j] : T(0);
    }
    std::fill(grad_prev_reads.begin(), grad_prev_reads.end(), T(0));
    matmat(gemm, grad_gates, reads_weight, grad_prev_reads.data(), batch, g, q);

    // What step t - 1 receives.
    grad_hidden.swap(grad_prev_hidden);
    if (s.kind != LSTM) std::fill(grad_hidden.begin(), grad_hidden.end(), T(0));
    grad_cell.swap(grad_prev_cell);
    grad_reads.swap(grad_prev_reads);
    grad_memory.swap(grad_prev_memory);
    grad_weights.swap(grad_prev_weights);
  }
  std::memcpy(s.grad_memory0, grad_memory.data(), sizeof(T) * batch * n * w);
  std::memcpy(s.grad_weights0, grad_weights.data(), sizeof(T) * batch * heads * n);
  std::memcpy(s.grad_reads0, grad_reads.data(), sizeof(T) * batch * q);
  std::memcpy(s.grad_hidden0, grad_hidden.data(), sizeof(T) * batch * d);
  if (s.kind == LSTM) std::memcpy(s.grad_cell0, grad_cell.data(), sizeof(T) * batch * d);
}

}  // namespace

extern "C" {
void ntm_forward_f32(const Sequence *s) { forward<float>(*s); }
void ntm_forward_f64(const Sequence *s) { forward<double>(*s); }
void ntm_backward_f32(const Sequence *s) { backward<float>(*s); }
void ntm_backward_f64(const Sequence *s) { backward<double>(*s); }
}
