/**
 * Learning-rate schedules, evaluated per epoch. `plateau` is the only stateful one (it reacts to the
 * validation loss); its state is checkpointed so a resumed run continues the same schedule.
 */
import type { TrainingConfig } from '../config/schema';

export type LrScheduleConfig = TrainingConfig['lr_schedule'];

export interface LrScheduleState {
  /** plateau: current multiplier of the base LR, best loss seen, epochs without improvement. */
  factor: number;
  best: number | null;
  bad: number;
}

export class LrSchedule {
  private st: LrScheduleState = { factor: 1, best: null, bad: 0 };

  constructor(
    private readonly cfg: LrScheduleConfig,
    private readonly baseLr: number,
    private readonly totalEpochs: number,
  ) {}

  /** LR for a 0-based epoch index. */
  lrForEpoch(epoch: number): number {
    const { name, min_lr: minLr } = this.cfg;
    const base = this.baseLr;
    switch (name) {
      case 'constant':
        return base;
      case 'cosine': {
        const t = Math.min(1, epoch / Math.max(1, this.totalEpochs));
        return minLr + (base - minLr) * 0.5 * (1 + Math.cos(Math.PI * t));
      }
      case 'step':
        return Math.max(minLr, base * this.cfg.gamma ** Math.floor(epoch / this.cfg.step_epochs));
      case 'plateau':
        return Math.max(minLr, base * this.st.factor);
    }
  }

  /** Feeds the epoch's validation loss (plateau: decays by gamma after `plateau_patience` bad epochs). */
  observe(valLoss: number): void {
    if (this.cfg.name !== 'plateau') return;
    if (this.st.best === null || valLoss < this.st.best) {
      this.st.best = valLoss;
      this.st.bad = 0;
      return;
    }
    this.st.bad++;
    if (this.st.bad >= this.cfg.plateau_patience) {
      this.st.factor *= this.cfg.gamma;
      this.st.bad = 0;
    }
  }

  get state(): LrScheduleState {
    return { ...this.st };
  }

  set state(s: LrScheduleState) {
    this.st = { ...s };
  }
}
