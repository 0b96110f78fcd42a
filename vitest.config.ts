import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // End-to-end files each start their own daemons; two cores, so two at a time.
    maxWorkers: 2,
    reporters: ['default', './test/helpers/plain-summary.ts'],
  },
});
