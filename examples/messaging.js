// Messaging host service: publish, request and requestMany through the node (the node's subject policy enforced).
(subject, payload) => {
  const m = this.hostServices.messaging;
  m.publish('fn.note', payload);
  const reply = m.request('fn.svc', payload);
  const many = m.requestMany('fn.many', payload);
  return { reply: new TextDecoder().decode(reply), many: many.length };
};
