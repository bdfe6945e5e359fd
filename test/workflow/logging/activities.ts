// The activity of the logging test: it always fails, as a step whose disk is full would.
export async function failingStep(): Promise<void> {
  throw new Error('no space left on device (the logging test failing on purpose)');
}
