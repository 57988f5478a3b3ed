export {
  fileImage,
  LOCAL_HELP,
  type LocalAdapterOptions,
  type RunningLocalAdapter,
  startLocalAdapter,
} from './adapter.js';
