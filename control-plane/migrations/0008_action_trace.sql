-- The W3C traceparent of each action, as the control plane continued it: the trace id of the
-- request that started the action (or a new one), which the command carries to the device and
-- every log line about the action shows. NULL for actions made before this column.
ALTER TABLE actions ADD COLUMN traceparent TEXT;
