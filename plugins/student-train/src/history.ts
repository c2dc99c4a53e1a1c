/**
 * The training history written into training.json (`lossHistory`): per step, the total loss, each
 * loss term (hard, soft, grad_norm) and the learning rate, as the training loop reports them.
 * Every step is kept up to `maxPoints`; past that the history is thinned to every 2nd, 4th, ...
 * step, so a long run's file stays small while its curve keeps its shape.
 */

/** One recorded step. `terms`: the loss terms by name ("hard", "soft", "grad_norm"). */
export interface HistoryPoint {
  step: number;
  loss: number;
  lr?: number;
  terms: Record<string, number>;
}

/** A validation score (metric `val/<name>`) at the step it was measured. */
export interface ValidationPoint {
  step: number;
  metric: string;
  value: number;
}

export class TrainingHistory {
  private readonly points: HistoryPoint[] = [];
  /** Validation scores (one per epoch at most): never thinned. */
  readonly validation: ValidationPoint[] = [];
  private stride = 1;

  constructor(private readonly maxPoints = 5000) {}

  /** Takes a metric as the training loop reports it: "loss", "loss/<term>" or "lr", at a step. */
  record(name: string, value: number, step: number | undefined): void {
    if (step !== undefined && name.startsWith('val/')) {
      this.validation.push({ step, metric: name.slice('val/'.length), value });
      return;
    }
    if (step === undefined || step % this.stride !== 0) return;
    let point = this.points[this.points.length - 1];
    if (!point || point.step !== step) {
      point = { step, loss: Number.NaN, terms: {} };
      this.points.push(point);
    }
    if (name === 'loss') point.loss = value;
    else if (name === 'lr') point.lr = value;
    else if (name.startsWith('loss/')) point.terms[name.slice('loss/'.length)] = value;
    if (this.points.length > this.maxPoints) this.thin();
  }

  private thin(): void {
    this.stride *= 2;
    const kept = this.points.filter((p) => p.step % this.stride === 0);
    this.points.splice(0, this.points.length, ...kept);
  }

  /** The points with a loss, in step order. */
  toJSON(): HistoryPoint[] {
    return this.points.filter((p) => Number.isFinite(p.loss));
  }
}
