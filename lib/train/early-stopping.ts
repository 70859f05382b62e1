/** Early stopping on the validation loss: stop after `patience` epochs without an improvement > min_delta. */
export interface EarlyStoppingState {
  best: number | null;
  bestEpoch: number | null;
  bad: number;
  stopped: boolean;
}

export class EarlyStopping {
  private st: EarlyStoppingState = { best: null, bestEpoch: null, bad: 0, stopped: false };

  constructor(
    private readonly patience: number,
    private readonly minDelta: number,
  ) {}

  /** Records an epoch's validation loss; returns whether it is a new best. */
  update(valLoss: number, epoch: number): boolean {
    if (this.st.best === null || valLoss < this.st.best - this.minDelta) {
      this.st.best = valLoss;
      this.st.bestEpoch = epoch;
      this.st.bad = 0;
      return true;
    }
    this.st.bad++;
    if (this.st.bad >= this.patience) this.st.stopped = true;
    return false;
  }

  get stopped(): boolean {
    return this.st.stopped;
  }

  get state(): EarlyStoppingState {
    return { ...this.st };
  }

  set state(s: EarlyStoppingState) {
    this.st = { ...s };
  }
}
