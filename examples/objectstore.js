// Object store host service: a store private to this workload, made by the node on first use.
(subject, payload) => {
  const os = this.hostServices.objectStore;
  os.put('greeting', payload);
  os.put('scratch', new TextEncoder().encode('temporary'));
  os.delete('scratch');
  const back = new TextDecoder().decode(os.get('greeting'));
  return { back, objects: os.list().map((o) => o.name), missing: os.get('scratch') };
};
