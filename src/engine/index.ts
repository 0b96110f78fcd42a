export { analyze, type Analysis } from './analyze.js';
export {
  PreparedFunction,
  type GuestConfig,
  type GuestInstance,
  type Invocation,
  type InvocationOutcome,
  type Metering,
} from './guest.js';
