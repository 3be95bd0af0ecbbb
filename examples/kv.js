// The seed's key-value function: a bucket private to this workload (namespace + name), made by the node.
(subject, payload) => {
  const kv = this.hostServices.kv;
  kv.set('hello', payload);
  kv.delete('hello');
  kv.set('hello2', payload);
  return { keys: kv.keys(), hello2: new TextDecoder().decode(kv.get('hello2')) };
};
