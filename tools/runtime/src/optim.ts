/**
 * The project's optimisers (Adam, SGD with momentum), learning-rate schedules and gradient clipping
 * on tfjs, used by student-train and f-distill. Written here rather than using tf.train.* so the
 * state is explicit (checkpointed as named tensors) and the update is one tidy per parameter.
 */
import * as tf from '@tensorflow/tfjs-core';

/** One trainable tensor with a stable name (the checkpoint / ONNX initializer name). */
export interface NamedVariable {
  name: string;
  variable: tf.Variable;
}

export type OptimizerName = 'adam' | 'sgd';

export interface OptimizerConfig {
  name: OptimizerName;
  lr: number;
  /** Adam betas. */
  beta1: number;
  beta2: number;
  eps: number;
  /** SGD momentum (0 = plain SGD). */
  momentum: number;
  /** Decoupled weight decay (AdamW-style for adam; L2-into-gradient for sgd). 0 = none. */
  weightDecay: number;
}

export const DEFAULT_OPTIMIZER: OptimizerConfig = {
  name: 'adam',
  lr: 1e-3,
  beta1: 0.9,
  beta2: 0.999,
  eps: 1e-8,
  momentum: 0.9,
  weightDecay: 0,
};

export type ScheduleName = 'constant' | 'cosine' | 'step' | 'linear';

export interface ScheduleConfig {
  name: ScheduleName;
  /** Linear warm-up from 0 over this many steps. */
  warmupSteps: number;
  /** step: multiply by `gamma` every `stepSize` steps. */
  stepSize: number;
  gamma: number;
  /** cosine / linear: final lr as a fraction of the base lr. */
  minFactor: number;
}

/** Learning-rate factor at 0-based `step` of `totalSteps`. */
export function scheduleFactor(schedule: ScheduleConfig, step: number, totalSteps: number): number {
  if (schedule.warmupSteps > 0 && step < schedule.warmupSteps) return (step + 1) / schedule.warmupSteps;
  const span = Math.max(1, totalSteps - schedule.warmupSteps);
  const progress = Math.min(1, Math.max(0, (step - schedule.warmupSteps) / span));
  switch (schedule.name) {
    case 'constant':
      return 1;
    case 'step':
      return Math.pow(schedule.gamma, Math.floor(step / Math.max(1, schedule.stepSize)));
    case 'cosine':
      return schedule.minFactor + (1 - schedule.minFactor) * 0.5 * (1 + Math.cos(Math.PI * progress));
    case 'linear':
      return 1 - (1 - schedule.minFactor) * progress;
  }
}

/**
 * Scales gradients so their global L2 norm is at most maxNorm (torch.nn.utils.clip_grad_norm_).
 * Returns the norm before clipping (float64 sum of float32 per-tensor squared norms).
 */
export function clipByGlobalNorm(grads: Record<string, tf.Tensor>, maxNorm: number): number {
  const names = Object.keys(grads);
  const squares = tf.tidy(() => tf.stack(names.map((n) => tf.sum(tf.square(grads[n]!)))));
  const values = squares.dataSync();
  squares.dispose();
  let total = 0;
  for (const v of values) total += v;
  const norm = Math.sqrt(total);
  if (maxNorm > 0 && norm > maxNorm) {
    const scale = maxNorm / (norm + 1e-6);
    for (const n of names) {
      const old = grads[n]!;
      grads[n] = tf.mul(old, scale);
      old.dispose();
    }
  }
  return norm;
}

/** Adam at a fixed learning rate, no weight decay (torch.optim.Adam's defaults unless given). */
export function adamConfig(lr: number, beta1 = 0.9, beta2 = 0.999, eps = 1e-8): OptimizerConfig {
  return { ...DEFAULT_OPTIMIZER, name: 'adam', lr, beta1, beta2, eps, weightDecay: 0 };
}

/**
 * One step minimising `loss` over `params` at the optimiser's configured learning rate; returns the
 * loss value. tf.variableGrads keys gradients by variable name; the optimiser by parameter name.
 */
export function minimiseStep(opt: Optimizer, params: NamedVariable[], loss: () => tf.Scalar): number {
  const { value, grads } = tf.variableGrads(
    loss,
    params.map((p) => p.variable),
  );
  const lossValue = value.dataSync()[0]!;
  value.dispose();
  const byParam: Record<string, tf.Tensor> = {};
  for (const p of params) {
    const g = grads[p.variable.name];
    if (g) byParam[p.name] = g;
  }
  const used = new Set(Object.values(byParam));
  for (const g of Object.values(grads)) if (!used.has(g)) g.dispose();
  opt.apply(byParam, opt.config.lr);
  return lossValue;
}

/** Optimiser with explicit, checkpointable state. */
export class Optimizer {
  /** Steps applied so far (Adam bias correction uses it). */
  step = 0;
  private readonly slots = new Map<string, tf.Variable[]>();

  constructor(
    readonly config: OptimizerConfig,
    private readonly params: NamedVariable[],
  ) {
    for (const p of params) {
      const count = config.name === 'adam' ? 2 : config.momentum > 0 ? 1 : 0;
      this.slots.set(
        p.name,
        Array.from({ length: count }, () => tf.variable(tf.zerosLike(p.variable), false)),
      );
    }
  }

  /** Applies one update with learning rate `lr`; disposes the gradients. */
  apply(grads: Record<string, tf.Tensor>, lr: number): void {
    this.step += 1;
    const c = this.config;
    const t = this.step;
    for (const p of this.params) {
      const g = grads[p.name];
      if (!g) continue;
      const slots = this.slots.get(p.name)!;
      tf.tidy(() => {
        if (c.name === 'adam') {
          const [m, v] = slots as [tf.Variable, tf.Variable];
          const m1 = tf.add(tf.mul(m, c.beta1), tf.mul(g, 1 - c.beta1));
          const v1 = tf.add(tf.mul(v, c.beta2), tf.mul(tf.square(g), 1 - c.beta2));
          m.assign(m1);
          v.assign(v1);
          // Bias corrections folded into the step size and epsilon (as torch.optim.Adam does).
          const bc1 = 1 - Math.pow(c.beta1, t);
          const bc2 = Math.sqrt(1 - Math.pow(c.beta2, t));
          const stepSize = lr / bc1;
          const update = tf.div(m1, tf.add(tf.div(tf.sqrt(v1), bc2), c.eps));
          let next = tf.sub(p.variable, tf.mul(update, stepSize));
          if (c.weightDecay > 0) next = tf.sub(next, tf.mul(p.variable, lr * c.weightDecay));
          p.variable.assign(next);
          update.dispose();
        } else {
          let grad: tf.Tensor = g;
          if (c.weightDecay > 0) grad = tf.add(grad, tf.mul(p.variable, c.weightDecay));
          if (c.momentum > 0) {
            const buf = slots[0]!;
            const b1 = t === 1 ? grad : tf.add(tf.mul(buf, c.momentum), grad);
            buf.assign(b1);
            grad = b1;
          }
          p.variable.assign(tf.sub(p.variable, tf.mul(grad, lr)));
        }
      });
      g.dispose();
    }
  }

  /** State as named tensors (for checkpoints): `<param>/m`, `<param>/v` or `<param>/momentum`. */
  state(): Record<string, tf.Tensor> {
    const out: Record<string, tf.Tensor> = {};
    for (const [name, slots] of this.slots) {
      const labels = this.config.name === 'adam' ? ['m', 'v'] : ['momentum'];
      slots.forEach((s, i) => (out[`${name}/${labels[i]}`] = s));
    }
    return out;
  }

  /** Restores state saved by state(); `step` separately. */
  load(state: Record<string, Float32Array>, step: number): void {
    for (const [name, slots] of this.slots) {
      const labels = this.config.name === 'adam' ? ['m', 'v'] : ['momentum'];
      slots.forEach((s, i) => {
        const data = state[`${name}/${labels[i]}`];
        if (!data || data.length !== s.size)
          throw new Error(`checkpoint: optimizer state ${name}/${labels[i]} missing or wrong size`);
        s.assign(tf.tensor(data, s.shape));
      });
    }
    this.step = step;
  }

  dispose(): void {
    for (const slots of this.slots.values()) for (const s of slots) s.dispose();
  }
}
