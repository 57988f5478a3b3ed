export { type RunningWebAdapter, startWebAdapter, type WebAdapterOptions } from './server.js';
