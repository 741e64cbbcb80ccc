redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
return 1
