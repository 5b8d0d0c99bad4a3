// Preloaded (node --import) into the demo process by the load test only, never part of the demo:
// on the IPC message 'heap' it runs full collections and answers with the heap in use.
import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc');

process.on('message', (message) => {
  if (message !== 'heap') return;
  // Several: objects freed by one collection's finalizers go on the next.
  for (let i = 0; i < 4; i++) gc();
  process.send({ heapUsed: getHeapStatistics().used_heap_size });
});
